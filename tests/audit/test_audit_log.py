"""The audit log end to end: what gets recorded, signed heads, proofs checked with the
public key alone, and tampering (edit, delete, reorder, forged head) caught exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from payguard.audit import service as audit
from payguard.crypto.keyring import keyring_path, load_signer
from payguard.db.engine import Database
from payguard.errors import Conflict
from payguard.settings import Settings
from tests.factories import PASSWORD, register, staff_auth, top_up


def make_records(db: Database, count: int, start: int = 0) -> None:
    def work(session: Any) -> None:
        for number in range(start, start + count):
            audit.record(
                session,
                actor=f"staff:stf_{number}",
                action="test.action",
                object=f"obj_{number}",
                details={"n": number},
            )

    db.transact(work)


def head(db: Database, settings: Settings) -> audit.TreeHead:
    made = db.transact(lambda session: audit.make_tree_head(session, load_signer(settings)))
    assert made is not None
    return made


def verify(db: Database, settings: Settings) -> audit.VerifyReport:
    with db.read() as session:
        return audit.verify(session, load_signer(settings).public_pem)


def tamper(db: Database, backend: str, *statements: str, **params: Any) -> None:
    """Do what only someone with the database's owner rights could: bypass the triggers."""
    with db.engine.begin() as connection:
        if backend == "sqlite":
            names = connection.execute(
                text("SELECT name FROM sqlite_master WHERE type='trigger' AND name LIKE 'audit_%'")
            ).scalars()
            for name in list(names):
                connection.execute(text(f"DROP TRIGGER {name}"))
        else:
            connection.execute(text("SET LOCAL session_replication_role = replica"))
        for statement in statements:
            connection.execute(text(statement), params)


def test_security_events_are_recorded_without_personal_data(
    client: TestClient, settings: Settings, db: Database
) -> None:
    reply = client.post(
        "/v1/customers",
        json={
            "username": "yuki",
            "password": PASSWORD,
            "display_name": "Yuki Tanaka",
            "phone": "+8613912345678",
            "email": "yuki@example.com",
            "legal_name": "Tanaka Yuki",
            "id_document_type": "passport",
            "id_number": "E12345678",
        },
    )
    assert reply.status_code == 201
    client.post("/v1/sessions", json={"username": "yuki", "password": "not-her-password"})
    top_up(client, register(client, "zed"), 10_000)
    wallet = reply.json()["wallet_account_ids"][0]
    client.post(
        f"/v1/accounts/{wallet}/freeze",
        headers=staff_auth(settings, "risk_analyst"),
        json={"reason": "report"},
    )
    auditor = staff_auth(settings, "auditor")
    rows = client.get("/v1/audit/records", headers=auditor, params={"limit": 500}).json()
    actions = {row["action"] for row in rows}
    assert {
        "identity.customer_registered",
        "identity.login_failed",
        "identity.login_succeeded",
        "identity.device_registered",
        "ledger.account_status_changed",
        "payments.status_changed",
    } <= actions
    failed = [row for row in rows if row["action"] == "identity.login_failed"]
    assert failed[0]["outcome"] == "refused"
    dumped = json.dumps(rows)
    for secret in ("+8613912345678", "yuki@example.com", "Tanaka", "E12345678", PASSWORD):
        assert secret not in dumped
    # A customer may not read the audit log.
    assert client.get("/v1/audit/records", headers=register(client, "amy").auth).status_code == 403


def test_proofs_from_the_api_check_out_with_the_public_key_alone(
    client: TestClient, settings: Settings, db: Database, tmp_path: Path
) -> None:
    make_records(db, 5)
    auditor = staff_auth(settings, "auditor")
    first = client.post("/v1/audit/heads", headers=auditor).json()
    make_records(db, 9, start=5)
    second = client.post("/v1/audit/heads", headers=auditor).json()
    assert second["size"] > first["size"] >= 5
    public_pem = client.get("/v1/audit/public-key").json()["public_key_pem"]

    records = client.get("/v1/audit/records", headers=auditor, params={"limit": 500}).json()
    seq = records[3]["seq"]
    inclusion = client.get(
        "/v1/audit/proofs/inclusion",
        headers=auditor,
        params={"seq": seq, "tree_size": second["size"]},
    ).json()
    assert audit.check_proof(inclusion, public_pem) == []
    consistency = client.get(
        "/v1/audit/proofs/consistency",
        headers=auditor,
        params={"first": first["size"], "second": second["size"]},
    ).json()
    assert audit.check_proof(consistency, public_pem) == []

    # Offline, as an auditor would: files, the public key, no database at all.
    proof_file, key_file = tmp_path / "proof.json", tmp_path / "audit.pem"
    proof_file.write_text(json.dumps(inclusion))
    key_file.write_text(public_pem)
    offline = {**os.environ, "PAYGUARD_DATABASE_URL": "postgresql+psycopg://nobody@192.0.2.1/x"}
    checked = subprocess.run(
        [sys.executable, "-m", "payguard", "audit", "verify-proof", str(proof_file),
         "--public-key", str(key_file)],
        capture_output=True, text=True, env=offline, check=False, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    inclusion["record"]["details"]["n"] = 999  # someone edits the exported record
    proof_file.write_text(json.dumps(inclusion))
    refused = subprocess.run(
        [sys.executable, "-m", "payguard", "audit", "verify-proof", str(proof_file),
         "--public-key", str(key_file)],
        capture_output=True, text=True, env=offline, check=False, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "does not hash to the leaf hash" in refused.stdout


def test_a_forged_tree_head_is_refused(settings: Settings) -> None:
    signer = load_signer(settings)
    made = audit.head_message(3, "ab" * 32, audit.clock.now())
    document = {
        "kind": "consistency",
        "first": {"size": 3, "root_hash": "ab" * 32, "made_at": audit.clock.now().isoformat(),
                  "signature": "AAAA"},
        "second": {"size": 3, "root_hash": "ab" * 32, "made_at": audit.clock.now().isoformat(),
                   "signature": "AAAA"},
        "proof": [],
    }  # fmt: skip
    problems = audit.check_proof(document, signer.public_pem)
    assert any("signature is not valid" in problem for problem in problems)
    assert signer.sign(made)  # the real key still signs
    assert keyring_path(settings).stat().st_mode & 0o777 == 0o600


def test_an_intact_log_verifies(settings: Settings, db: Database) -> None:
    make_records(db, 7)
    head(db, settings)
    make_records(db, 6, start=7)
    head(db, settings)
    make_records(db, 2, start=13)  # not yet sealed: not covered, not a problem
    report = verify(db, settings)
    assert report.ok and report.records == 13 and report.heads_checked == 2


def _seq_of_leaf(db: Database, leaf_index: int) -> int:
    with db.read() as session:
        return int(
            session.execute(
                text("SELECT seq FROM audit_records WHERE leaf_index = :i"), {"i": leaf_index}
            ).scalar_one()
        )


def test_an_edited_record_is_named_with_the_heads_it_breaks(
    settings: Settings, db: Database, backend: str
) -> None:
    make_records(db, 10)
    head(db, settings)  # size 10
    make_records(db, 10, start=10)
    head(db, settings)  # size 20
    victim = _seq_of_leaf(db, 12)
    tamper(
        db,
        backend,
        "UPDATE audit_records SET outcome = 'refused' WHERE seq = :seq",
        seq=victim,
    )
    report = verify(db, settings)
    assert report.bad_records == [f"record seq {victim} (leaf 12): content does not match its hash"]
    assert report.bad_heads == ["tree head of size 20: the root does not match the records"]


def test_an_edit_that_also_rewrites_the_stored_hash_is_located_by_the_heads(
    settings: Settings, db: Database, backend: str
) -> None:
    for start in (0, 8, 16):
        make_records(db, 8, start=start)
        head(db, settings)
    victim = _seq_of_leaf(db, 10)
    with db.read() as session:
        row = session.get(audit.AuditRecord, victim)
        assert row is not None
        row.details = {"n": -1}
        forged = audit.merkle.leaf_hash(audit.leaf_bytes(row, 10)).hex()
    tamper(
        db,
        backend,
        "UPDATE audit_records SET details = :d, leaf_hash = :h WHERE seq = :seq",
        d=json.dumps({"n": -1}),
        h=forged,
        seq=victim,
    )
    report = verify(db, settings)
    assert report.bad_records == []
    assert report.bad_heads == [
        "tree head of size 16: the root does not match the records",
        "tree head of size 24: the root does not match the records",
    ]
    assert report.suspect_range == (8, 15)


def test_a_deleted_record_leaves_a_named_gap(
    settings: Settings, db: Database, backend: str
) -> None:
    make_records(db, 9)
    head(db, settings)
    tamper(db, backend, "DELETE FROM audit_records WHERE leaf_index = 4")
    report = verify(db, settings)
    assert report.bad_records == ["leaf 4: missing (deleted record)"]
    assert report.bad_heads == ["tree head of size 9: the root does not match the records"]


def test_reordered_records_are_both_named(settings: Settings, db: Database, backend: str) -> None:
    make_records(db, 6)
    head(db, settings)
    first, second = _seq_of_leaf(db, 1), _seq_of_leaf(db, 2)
    tamper(
        db,
        backend,
        "UPDATE audit_records SET leaf_index = -1 WHERE seq = :a",
        "UPDATE audit_records SET leaf_index = 1 WHERE seq = :b",
        "UPDATE audit_records SET leaf_index = 2 WHERE seq = :a",
        a=first,
        b=second,
    )
    report = verify(db, settings)
    assert sorted(report.bad_records) == sorted(
        [
            f"record seq {second} (leaf 1): content does not match its hash",
            f"record seq {first} (leaf 2): content does not match its hash",
        ]
    )
    assert report.bad_heads == ["tree head of size 6: the root does not match the records"]


def test_a_forged_head_in_the_database_fails_its_signature(
    settings: Settings, db: Database, backend: str
) -> None:
    make_records(db, 4)
    made = head(db, settings)
    tamper(
        db,
        backend,
        "UPDATE audit_tree_heads SET root_hash = :root WHERE size = :size",
        root="00" * 32,
        size=made.size,
    )
    report = verify(db, settings)
    assert "tree head of size 4: the signature is not valid" in report.bad_heads


def test_the_database_itself_refuses_to_rewrite_the_log(settings: Settings, db: Database) -> None:
    make_records(db, 3)
    head(db, settings)
    for statement in (
        "UPDATE audit_records SET outcome = 'refused' WHERE leaf_index = 0",
        "DELETE FROM audit_records WHERE leaf_index = 1",
        "UPDATE audit_tree_heads SET root_hash = 'x'",
        "DELETE FROM audit_tree_heads",
    ):
        with pytest.raises(DBAPIError), db.engine.begin() as connection:
            connection.execute(text(statement))
    assert verify(db, settings).ok


def test_the_cli_verifies_and_reports_tampering(
    settings: Settings, db: Database, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from payguard import cli
    from payguard.settings import get_settings

    make_records(db, 12)
    monkeypatch.setenv("PAYGUARD_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PAYGUARD_VAR_DIR", str(settings.var_dir))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        made = runner.invoke(cli.app, ["audit", "head"])
        assert made.exit_code == 0 and '"size": 12' in made.output
        good = runner.invoke(cli.app, ["audit", "verify"])
        assert good.exit_code == 0 and "intact" in good.output
        tamper(db, backend, "UPDATE audit_records SET actor = 'system' WHERE leaf_index = 7")
        bad = runner.invoke(cli.app, ["audit", "verify"])
        assert bad.exit_code == 1
        assert "(leaf 7): content does not match its hash" in bad.output
    finally:
        get_settings.cache_clear()


def test_a_gm_suite_log_hashes_with_sm3_and_signs_with_sm2(
    settings: Settings, db: Database, backend: str
) -> None:
    gm = settings.model_copy(update={"crypto_suite": "gm"})
    signer = load_signer(gm)
    assert signer.suite == "gm" and "SM2 PUBLIC KEY" in signer.public_pem
    make_records(db, 5)
    made = db.transact(lambda session: audit.make_tree_head(session, signer))
    assert made is not None and made.suite == "gm"
    with db.read() as session:
        leaves = [
            bytes.fromhex(value)
            for (value,) in session.execute(
                text("SELECT leaf_hash FROM audit_records ORDER BY leaf_index")
            )
        ]
        first = session.get(audit.AuditRecord, _seq_of_leaf(db, 0))
        assert first is not None
        sm3_leaf = audit.merkle.leaf_hash(audit.leaf_bytes(first, 0), audit.digest_of("gm"))
    assert leaves[0] == sm3_leaf
    assert made.root_hash == audit.merkle.root(leaves, audit.digest_of("gm")).hex()
    with db.read() as session:
        report = audit.verify(session, signer.public_pem)
        proof = audit.inclusion(session, _seq_of_leaf(db, 2), 5)
    assert report.ok and report.heads_checked == 1
    assert audit.check_proof(proof, signer.public_pem) == []
    # The log keeps its suite for life: the standard key may not sign its heads.
    make_records(db, 2, start=5)
    with pytest.raises(Conflict):
        db.transact(lambda session: audit.make_tree_head(session, load_signer(settings)))
    tamper(db, backend, "UPDATE audit_records SET actor = 'x' WHERE leaf_index = 3")
    with db.read() as session:
        broken = audit.verify(session, signer.public_pem)
    assert any("(leaf 3)" in problem for problem in broken.bad_records)


def test_a_tree_head_is_published_to_a_witness(settings: Settings, db: Database) -> None:
    import http.server
    import threading

    received: list[dict[str, Any]] = []

    class Witness(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Witness)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        make_records(db, 3)
        made = head(db, settings)
        url = f"http://127.0.0.1:{server.server_port}/heads"
        assert audit.publish_head(url, made)
        assert not audit.publish_head("http://127.0.0.1:9/unreachable", made, timeout=1)
    finally:
        server.shutdown()
    assert received == [made.as_dict()]
    public_pem = load_signer(settings).public_pem
    witnessed = {"kind": "consistency", "first": received[0], "second": received[0], "proof": []}
    assert audit.check_proof(witnessed, public_pem) == []
