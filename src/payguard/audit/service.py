"""The tamper-evident audit log: append, seal into an RFC 6962 Merkle tree, sign tree
heads, serve proofs, and verify everything.

Appending is one INSERT in the caller's transaction (the payment path pays nothing
more). Records get their place in the tree when *sealed*: under a lock, the committed
unsealed records are numbered in ``seq`` order and their leaf hashes stored. Sealing
before each tree head (rather than numbering at insert time) means concurrent writers
never wait on one another, and a record whose transaction commits late is simply sealed
into the next head.

The leaf is ``H(0x00 ‖ canonical JSON of the record including its leaf index)``, so an
edited, moved or swapped record no longer matches its stored hash, and a deleted one
leaves a gap; a record rewritten together with its stored hash is caught by every signed
head that covers it (``verify`` reports the range between the last good head and the
first bad one).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, text, update
from sqlalchemy.orm import Session

from payguard import clock
from payguard.audit import merkle
from payguard.audit.models import AuditRecord, AuditTreeHead
from payguard.crypto.keyring import AnySigner, verify_signature
from payguard.crypto.suites import suite as cipher_suite
from payguard.errors import Conflict, NotFound, ValidationProblem

HEAD_CONTEXT = b"payguard-audit-tree-head-v1"
SEAL_BATCH = 50_000
RECORDS = cast(Table, AuditRecord.__table__)
_APPEND = insert(RECORDS)  # the Table, not the entity: no ORM bulk-insert machinery


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    object: str | None = None,
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
) -> None:
    """Append one record in the caller's transaction. ``details`` must not hold personal
    data: ids, amounts, reasons codes; never names, numbers or free text from customers."""
    # A Core INSERT with separate parameters: its compiled form is cached across calls.
    session.execute(
        _APPEND,
        [
            {
                "at": clock.now(),
                "actor": actor[:64],
                "action": action[:64],
                "object": object[:96] if object else None,
                "outcome": outcome,
                "details": details or {},
            }
        ],
    )


def leaf_bytes(row: Any, leaf_index: int) -> bytes:
    """The canonical bytes a leaf hashes: every field, the leaf index included."""
    document = {
        "seq": row.seq,
        "leaf_index": leaf_index,
        "at": row.at.isoformat(),
        "actor": row.actor,
        "action": row.action,
        "object": row.object,
        "outcome": row.outcome,
        "details": row.details,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _lock(session: Session) -> None:
    """One sealer at a time. SQLite's write transaction is already exclusive."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(727172)"))


def digest_of(suite_name: str) -> merkle.HashFunction:
    """The tree's hash function: SHA-256 (standard) or SM3 (gm)."""
    return cipher_suite(suite_name).hash


def log_suite(session: Session, default: str) -> str:
    """A log keeps the suite of its first tree head for life; ``default`` before that."""
    first = session.scalar(select(AuditTreeHead.suite).order_by(AuditTreeHead.size).limit(1))
    return first or default


def seal(session: Session, digest: merkle.HashFunction, limit: int = SEAL_BATCH) -> int:
    """Number the unsealed records and store their leaf hashes; returns how many."""
    _lock(session)
    size = sealed_size(session)
    rows = session.execute(
        select(*RECORDS.c)
        .where(RECORDS.c.leaf_index.is_(None))
        .order_by(RECORDS.c.seq)
        .limit(limit)
    ).all()
    if rows:
        session.execute(
            update(RECORDS)
            .where(RECORDS.c.seq == bindparam("the_seq"))
            .values(leaf_index=bindparam("the_index"), leaf_hash=bindparam("the_hash")),
            [
                {
                    "the_seq": row.seq,
                    "the_index": size + offset,
                    "the_hash": merkle.leaf_hash(leaf_bytes(row, size + offset), digest).hex(),
                }
                for offset, row in enumerate(rows)
            ],
            execution_options={"synchronize_session": False},
        )
    return len(rows)


def sealed_size(session: Session) -> int:
    found = session.scalar(select(func.max(AuditRecord.leaf_index)))
    return 0 if found is None else int(found) + 1


@dataclass(frozen=True)
class TreeHead:
    size: int
    root_hash: str
    made_at: datetime
    suite: str
    key_id: str
    signature: str

    def signed_bytes(self) -> bytes:
        return head_message(self.size, self.root_hash, self.made_at)

    def as_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "root_hash": self.root_hash,
            "made_at": self.made_at.isoformat(),
            "suite": self.suite,
            "key_id": self.key_id,
            "signature": self.signature,
        }


def head_message(size: int, root_hash: str, made_at: datetime) -> bytes:
    return b"\n".join(
        [HEAD_CONTEXT, str(size).encode(), root_hash.encode(), made_at.isoformat().encode()]
    )


def _head(row: AuditTreeHead) -> TreeHead:
    return TreeHead(row.size, row.root_hash, row.made_at, row.suite, row.key_id, row.signature)


def _frontier_of(row: AuditTreeHead | None, digest: merkle.HashFunction) -> merkle.Frontier:
    frontier = merkle.Frontier(digest)
    if row is not None:
        frontier.restore(row.size, [(int(h), bytes.fromhex(v)) for h, v in row.frontier])
    return frontier


def make_tree_head(session: Session, signer: AnySigner) -> TreeHead | None:
    """Seal what is new and sign a head over the whole tree; None when nothing is new."""
    suite_name = log_suite(session, signer.suite)
    if suite_name != signer.suite:
        raise Conflict(
            f"this audit log uses the {suite_name} suite for life; "
            f"its heads cannot be signed with a {signer.suite} key"
        )
    digest = digest_of(suite_name)
    while seal(session, digest) == SEAL_BATCH:
        pass
    latest = session.scalar(select(AuditTreeHead).order_by(AuditTreeHead.size.desc()).limit(1))
    size = sealed_size(session)
    if size == 0 or (latest is not None and latest.size == size):
        return None
    frontier = _frontier_of(latest, digest)
    start = latest.size if latest is not None else 0
    for (leaf,) in session.execute(
        select(AuditRecord.leaf_hash)
        .where(AuditRecord.leaf_index >= start, AuditRecord.leaf_index < size)
        .order_by(AuditRecord.leaf_index)
    ):
        frontier.append(bytes.fromhex(leaf or ""))
    root = frontier.root().hex()
    made_at = clock.now()
    signature = base64.b64encode(signer.sign(head_message(size, root, made_at))).decode()
    row = AuditTreeHead(
        size=size,
        root_hash=root,
        made_at=made_at,
        suite=suite_name,
        key_id=signer.key_id,
        signature=signature,
        frontier=[[height, value.hex()] for height, value in frontier.nodes()],
    )
    session.add(row)
    session.flush()
    return _head(row)


def latest_head(session: Session) -> TreeHead | None:
    row = session.scalar(select(AuditTreeHead).order_by(AuditTreeHead.size.desc()).limit(1))
    return _head(row) if row is not None else None


def heads(session: Session) -> list[TreeHead]:
    return [_head(r) for r in session.scalars(select(AuditTreeHead).order_by(AuditTreeHead.size))]


def _head_at(session: Session, size: int) -> TreeHead:
    row = session.get(AuditTreeHead, size)
    if row is None:
        raise NotFound(f"no signed tree head of size {size}; GET /v1/audit/heads lists them")
    return _head(row)


def _leaves(session: Session, size: int) -> list[bytes]:
    return [
        bytes.fromhex(value or "")
        for (value,) in session.execute(
            select(AuditRecord.leaf_hash)
            .where(AuditRecord.leaf_index < size)
            .order_by(AuditRecord.leaf_index)
        )
    ]


def inclusion(session: Session, seq: int, tree_size: int) -> dict[str, Any]:
    """The proof that record ``seq`` is in the signed tree of ``tree_size``."""
    head = _head_at(session, tree_size)
    row = session.get(AuditRecord, seq)
    if row is None or row.leaf_index is None:
        raise NotFound(f"no sealed audit record {seq}")
    if row.leaf_index >= tree_size:
        raise ValidationProblem(f"record {seq} was sealed after the tree of size {tree_size}")
    digest = digest_of(head.suite)
    proof = merkle.inclusion_proof(row.leaf_index, _leaves(session, tree_size), digest)
    return {
        "kind": "inclusion",
        "seq": seq,
        "leaf_index": row.leaf_index,
        "record": json.loads(leaf_bytes(row, row.leaf_index)),
        "leaf_hash": row.leaf_hash,
        "proof": [node.hex() for node in proof],
        "tree_head": head.as_dict(),
    }


def consistency(session: Session, first: int, second: int) -> dict[str, Any]:
    """The proof that the signed tree of ``first`` is a prefix of that of ``second``."""
    if not 0 < first <= second:
        raise ValidationProblem("first and second: 0 < first ≤ second")
    older, newer = _head_at(session, first), _head_at(session, second)
    proof = merkle.consistency_proof(first, _leaves(session, second), digest_of(newer.suite))
    return {
        "kind": "consistency",
        "first": older.as_dict(),
        "second": newer.as_dict(),
        "proof": [node.hex() for node in proof],
    }


def publish_head(url: str, head: TreeHead, timeout: float = 5.0) -> bool:
    """POST a signed tree head to a witness; True when it answered 2xx. A witness keeping
    every head is what makes a rewrite of the heads table itself visible."""
    import httpx

    try:
        reply = httpx.post(url, json=head.as_dict(), timeout=timeout)
    except httpx.HTTPError:
        return False
    return reply.is_success


# ---------------------------------------------------------------- verification


@dataclass
class VerifyReport:
    records: int = 0
    heads_checked: int = 0
    bad_records: list[str] = field(default_factory=list)
    bad_heads: list[str] = field(default_factory=list)
    suspect_range: tuple[int, int] | None = None  # leaf indexes, when only heads tell

    @property
    def ok(self) -> bool:
        return not self.bad_records and not self.bad_heads


def verify(
    session: Session,
    public_pem: str,
    on_progress: Callable[[int, int], None] | None = None,
    batch: int = 20_000,
) -> VerifyReport:
    """Recompute every leaf and the root at every signed head; check every signature."""
    report = VerifyReport()
    signed = heads(session)
    for head in signed:
        if not verify_signature(public_pem, base64.b64decode(head.signature), head.signed_bytes()):
            report.bad_heads.append(f"tree head of size {head.size}: the signature is not valid")
    pending = [h for h in signed]
    total = sealed_size(session)
    digest = digest_of(signed[0].suite if signed else "standard")
    frontier = merkle.Frontier(digest)
    expected = 0
    last_good = 0
    for row in _sealed_rows(session, batch):
        assert row.leaf_index is not None
        while row.leaf_index > expected:
            report.bad_records.append(f"leaf {expected}: missing (deleted record)")
            frontier.append(b"\x00" * 32)  # keep positions; the heads will fail too
            expected += 1
        computed = merkle.leaf_hash(leaf_bytes(row, row.leaf_index), digest)
        if row.leaf_hash != computed.hex():
            report.bad_records.append(
                f"record seq {row.seq} (leaf {row.leaf_index}): content does not match its hash"
            )
        frontier.append(computed)
        expected += 1
        report.records += 1
        while pending and pending[0].size == frontier.size:
            head = pending.pop(0)
            report.heads_checked += 1
            if frontier.root().hex() != head.root_hash:
                report.bad_heads.append(
                    f"tree head of size {head.size}: the root does not match the records"
                )
                if report.suspect_range is None:
                    report.suspect_range = (last_good, head.size - 1)
            else:
                last_good = head.size
        if on_progress is not None and report.records % 10_000 == 0:
            on_progress(report.records, total)
    for head in pending:
        report.bad_heads.append(f"tree head of size {head.size}: records are missing")
    if on_progress is not None:
        on_progress(report.records, total)
    return report


def _sealed_rows(session: Session, batch: int) -> Iterator[Any]:
    """Sealed records in leaf order, as plain rows, a batch at a time (bounded memory)."""
    after = -1
    while True:
        rows = session.execute(
            select(*RECORDS.c)
            .where(RECORDS.c.leaf_index > after)
            .order_by(RECORDS.c.leaf_index)
            .limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        after = int(rows[-1].leaf_index)


# ---------------------------------------------------------------- offline proof check


def check_proof(document: dict[str, Any], public_pem: str) -> list[str]:
    """Check an exported proof with the public key alone; returns the problems found."""
    problems: list[str] = []
    kind = document.get("kind")
    if kind == "inclusion":
        heads_in = [document["tree_head"]]
    elif kind == "consistency":
        heads_in = [document["first"], document["second"]]
    else:
        return ["not a payguard audit proof (kind must be inclusion or consistency)"]
    for head in heads_in:
        message = head_message(
            int(head["size"]), head["root_hash"], datetime.fromisoformat(head["made_at"])
        )
        if not verify_signature(public_pem, base64.b64decode(head["signature"]), message):
            problems.append(f"tree head of size {head['size']}: the signature is not valid")
    proof = [bytes.fromhex(node) for node in document["proof"]]
    if kind == "inclusion":
        head = document["tree_head"]
        record_bytes = json.dumps(
            document["record"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
        digest = digest_of(head.get("suite", "standard"))
        leaf = merkle.leaf_hash(record_bytes, digest)
        if leaf.hex() != document["leaf_hash"]:
            problems.append("the record does not hash to the leaf hash")
        if not merkle.verify_inclusion(
            int(document["leaf_index"]),
            int(head["size"]),
            leaf,
            proof,
            bytes.fromhex(head["root_hash"]),
            digest,
        ):
            problems.append("the inclusion proof does not lead to the signed root")
    else:
        first, second = document["first"], document["second"]
        if not merkle.verify_consistency(
            int(first["size"]),
            int(second["size"]),
            bytes.fromhex(first["root_hash"]),
            bytes.fromhex(second["root_hash"]),
            proof,
            digest_of(second.get("suite", "standard")),
        ):
            problems.append("the consistency proof does not join the two signed roots")
    return problems
