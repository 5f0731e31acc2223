"""Just enough PDF reading to check what reportlab wrote: the text of the content streams,
decoded per font (WinAnsi for Helvetica, UCS-2 for the STSong-Light CID font)."""

from __future__ import annotations

import base64
import re
import zlib
from pathlib import Path

_STREAM = re.compile(
    rb"<<(?P<dict>(?:(?!>>\s*stream).)*?)>>\s*stream\r?\n(?P<body>.*?)endstream", re.S
)
_TOKEN = re.compile(rb"/(?P<font>F\d+)\s+[\d.]+\s+Tf|(?P<str>\((?:\\.|[^\\)])*\))", re.S)
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}


def _unescape(literal: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(literal):
        byte = literal[i : i + 1]
        if byte != b"\\":
            out += byte
            i += 1
            continue
        following = literal[i + 1 : i + 2]
        octal = re.match(rb"[0-7]{1,3}", literal[i + 1 : i + 4])
        if octal:
            out.append(int(octal.group(0), 8) & 0xFF)
            i += 1 + len(octal.group(0))
        else:
            out += _ESCAPES.get(following, following)
            i += 2
    return bytes(out)


def cid_font_names(data: bytes) -> set[str]:
    names = set()
    for match in re.finditer(rb"obj\s*<<(.*?)endobj", data, re.S):
        body = match.group(1)
        if b"UniGB-UCS2-H" in body:
            name = re.search(rb"/Name /(F\d+)", body)
            if name:
                names.add(name.group(1).decode())
    return names


def streams(data: bytes) -> list[bytes]:
    out = []
    for match in _STREAM.finditer(data):
        head, body = match.group("dict"), match.group("body")
        if b"/Subtype /Image" in head:
            continue
        if b"ASCII85Decode" in head:
            body = base64.a85decode(body.strip(), adobe=True)
        if b"FlateDecode" in head:
            body = zlib.decompress(body)
        out.append(body)
    return out


def pdf_text(path: Path) -> str:
    data = path.read_bytes()
    cid = cid_font_names(data)
    text: list[str] = []
    for stream in streams(data):
        font = ""
        for token in _TOKEN.finditer(stream):
            if token.group("font"):
                font = token.group("font").decode()
                continue
            raw = _unescape(token.group("str")[1:-1])
            text.append(
                raw.decode("utf-16-be", "replace")
                if font in cid
                else raw.decode("cp1252", "replace")
            )
    return "".join(text)
