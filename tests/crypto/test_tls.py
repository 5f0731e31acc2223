"""HTTPS with a development certificate: TLS 1.2+ only, HSTS, and the security headers."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from payguard import cli
from payguard.settings import Settings


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_plain_replies_carry_the_security_headers(client: TestClient) -> None:
    reply = client.get("/v1/audit/public-key")
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["x-frame-options"] == "DENY"
    assert reply.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in reply.headers  # not over plain HTTP


def test_https_with_a_dev_certificate(settings: Settings, tmp_path: Path) -> None:
    if not settings.is_sqlite:
        pytest.skip("one backend is enough for the transport")
    made = CliRunner().invoke(cli.app, ["dev-cert", "--out", str(tmp_path / "tls")])
    assert made.exit_code == 0, made.output
    ca, cert, key = (tmp_path / "tls" / name for name in ("ca.pem", "server.pem", "server-key.pem"))
    assert key.stat().st_mode & 0o777 == 0o600
    port = _free_port()
    env = {
        **os.environ,
        "PAYGUARD_DATABASE_URL": settings.database_url,
        "PAYGUARD_VAR_DIR": str(settings.var_dir),
        "PAYGUARD_ENV": "test",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "payguard", "serve", "--port", str(port),
         "--tls-cert", str(cert), "--tls-key", str(key)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"https://127.0.0.1:{port}"
    trusted = ssl.create_default_context(cafile=str(ca))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                reply = httpx.get(base + "/readyz", verify=trusted, timeout=1)
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert reply.status_code == 200
        assert reply.headers["strict-transport-security"].startswith("max-age=31536000")
        api = httpx.get(base + "/v1/audit/public-key", verify=trusted)
        assert api.headers["cache-control"] == "no-store"

        # Without the CA the certificate is not trusted.
        with pytest.raises(httpx.ConnectError):
            httpx.get(base + "/readyz", timeout=5)
        # TLS 1.2 and 1.3 only.
        modern = ssl.create_default_context(cafile=str(ca))
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            modern.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(str(ca))
        old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        with pytest.warns(DeprecationWarning):  # as it should be
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("ALL:@SECLEVEL=0")
        with (
            pytest.raises(ssl.SSLError),
            socket.create_connection(("127.0.0.1", port)) as raw,
            old.wrap_socket(raw, server_hostname="127.0.0.1"),
        ):
            pass
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_serve_refuses_half_a_tls_pair(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.app, ["serve", "--tls-cert", str(tmp_path / "x.pem")])
    assert result.exit_code == 1
    assert "go together" in result.output
