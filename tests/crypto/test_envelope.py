"""Envelope encryption: per-owner keys wrapped by the KEK, ciphertexts bound to their
row, blind indexes, crypto-shredding, and the keyring file itself."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from payguard.crypto.envelope import ERASED, Envelope, envelope_for
from payguard.crypto.keyring import keyring_path, load_keyring
from payguard.crypto.models import DataKey
from payguard.crypto.suites import DecryptionFailed
from payguard.db.engine import Database
from payguard.settings import Settings


def test_a_sealed_value_opens_only_where_it_was_sealed(settings: Settings, db: Database) -> None:
    envelope = envelope_for(settings)
    sealed = db.transact(
        lambda session: envelope.seal(session, "cus_1", "customers.phone.cus_1", "+8613800000001")
    )
    assert "+8613800000001" not in sealed and sealed.startswith("pg1.dek_")
    with db.read() as session:
        assert envelope.open(session, "customers.phone.cus_1", sealed) == "+8613800000001"
        with pytest.raises(ValueError):  # moved to another row
            envelope.open(session, "customers.phone.cus_2", sealed)
        with pytest.raises(ValueError):  # moved to another column
            envelope.open(session, "customers.email.cus_1", sealed)
        tampered = sealed[:-6] + ("AAAAAA" if not sealed.endswith("AAAAAA") else "BBBBBB")
        with pytest.raises(ValueError):
            envelope.open(session, "customers.phone.cus_1", tampered)


def test_each_owner_has_a_key_stored_only_wrapped(settings: Settings, db: Database) -> None:
    envelope = envelope_for(settings)

    def two_owners(session: object) -> tuple[tuple[str, bytes], tuple[str, bytes]]:
        return envelope.key_for(session, "cus_a"), envelope.key_for(session, "cus_b")  # type: ignore[arg-type]

    (id_a, key_a), (id_b, key_b) = db.transact(two_owners)
    assert id_a != id_b and key_a != key_b
    with db.read() as session:
        rows = session.scalars(select(DataKey)).all()
        assert {row.owner for row in rows} == {"cus_a", "cus_b"}
        for row in rows:
            assert row.wrapped is not None
            assert key_a.hex() not in row.wrapped and key_b.hex() not in row.wrapped
    # Another KEK cannot unwrap them.
    real = load_keyring(settings)
    stranger = Envelope(replace(real, keks={"kek-1": b"\x01" * 32}, active_kek_id="kek-1"))
    with db.read() as session, pytest.raises(DecryptionFailed):
        stranger._key(session, id_a)


def test_erasing_an_owner_makes_their_values_unreadable(settings: Settings, db: Database) -> None:
    envelope = envelope_for(settings)
    mine = db.transact(lambda session: envelope.seal(session, "cus_x", "t.c.cus_x", "secret"))
    theirs = db.transact(lambda session: envelope.seal(session, "cus_y", "t.c.cus_y", "other"))
    assert db.transact(lambda session: envelope.erase(session, "cus_x")) == 1
    fresh = Envelope(load_keyring(settings))
    with db.read() as session:
        assert envelope.open(session, "t.c.cus_x", mine) == ERASED
        assert fresh.open(session, "t.c.cus_x", mine) == ERASED  # no cache brings it back
        assert envelope.open(session, "t.c.cus_y", theirs) == "other"


def test_blind_indexes_match_equal_values_and_nothing_else(settings: Settings) -> None:
    envelope = envelope_for(settings)
    assert envelope.blind_index("phone", "+8613800000001") == envelope.blind_index(
        "phone", " +8613800000001 "
    )
    assert envelope.blind_index("phone", "+8613800000001") != envelope.blind_index(
        "phone", "+8613800000002"
    )
    # Per kind: the same text as an e-mail does not meet it as a phone.
    assert envelope.blind_index("phone", "x") != envelope.blind_index("email", "x")
    assert "8613800000001" not in envelope.blind_index("phone", "+8613800000001")


def test_the_keyring_is_private_and_stable(settings: Settings) -> None:
    first = load_keyring(settings)
    path = keyring_path(settings)
    assert path.stat().st_mode & 0o777 == 0o600
    stored = json.loads(path.read_text())
    assert set(stored) >= {"keks", "active_kek", "index_key", "signing"}
    assert load_keyring(settings).kek("kek-1") == first.kek("kek-1")


def test_the_gm_suite_seals_with_sm4_and_a_rotation_moves_data_over(
    settings: Settings, db: Database
) -> None:
    from payguard.crypto import rotation

    standard = envelope_for(settings)
    old = db.transact(lambda session: standard.seal(session, "cus_g", "t.c.cus_g", "13800"))
    gm_settings = settings.model_copy(update={"crypto_suite": "gm"})
    gm = envelope_for(gm_settings)
    assert gm.suite_name == "gm"
    with db.read() as session:
        assert gm.open(session, "t.c.cus_g", old) == "13800"  # old keys keep their suite
    assert db.transact(lambda session: rotation.rotate_data_keys(session, gm, "customers")) == 1
    with db.read() as session:
        suites = dict(session.execute(select(DataKey.version, DataKey.suite)).all())
    assert suites == {1: "standard", 2: "gm"}
    fresh = db.transact(lambda session: gm.seal(session, "cus_g", "t.c.cus_g", "13900"))
    with db.read() as session:
        assert gm.open(session, "t.c.cus_g", fresh) == "13900"
        newest = session.scalar(select(DataKey).where(DataKey.version == 2))
        assert newest is not None and len(gm._unwrap(newest)) == 16  # an SM4 key


def test_a_passphrase_seals_the_keyring_file(settings: Settings, tmp_path: Path) -> None:
    from pydantic import SecretStr

    from payguard.crypto import keyring as keyring_module

    sealed_settings = settings.model_copy(
        update={"var_dir": tmp_path / "sealed", "keyring_passphrase": SecretStr("correct horse")}
    )
    first = load_keyring(sealed_settings)
    path = keyring_path(sealed_settings)
    stored = json.loads(path.read_text())
    assert stored["sealed"] == "scrypt+aes-256-gcm"
    assert "keks" not in stored and first.kek("kek-1").hex() not in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    # Another process, with the passphrase: the same keys. Without it, or with another: no.
    keyring_module._LOADED.clear()
    again = load_keyring(sealed_settings)
    assert again.kek("kek-1") == first.kek("kek-1")
    for passphrase in (None, SecretStr("wrong horse")):
        keyring_module._LOADED.clear()
        keyring_module._PASSPHRASES.clear()
        other = sealed_settings.model_copy(update={"keyring_passphrase": passphrase})
        with pytest.raises(keyring_module.KeyringLocked):
            load_keyring(other)
    keyring_module._LOADED.clear()
    keyring_module._PASSPHRASES.clear()
