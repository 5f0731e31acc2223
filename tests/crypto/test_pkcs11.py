"""The pkcs11 key provider against SoftHSM2: the KEK is generated in the token and never
leaves it, data keys are wrapped and unwrapped inside it, and it rotates there too."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from payguard.app import create_app
from payguard.crypto import rotation
from payguard.crypto.envelope import Envelope, envelope_for
from payguard.crypto.keyring import load_keyring
from payguard.crypto.models import DataKey
from payguard.db.engine import Database
from payguard.identity import service as identity
from payguard.identity.models import Customer
from payguard.settings import Settings
from tests.conftest import service_unavailable
from tests.factories import PASSWORD

LIBRARY = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "246810"
TOKENS = [f"payguard-test-{number}" for number in range(4)]


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Fresh SoftHSM2 tokens, made before the library is first loaded in this process."""
    if not Path(LIBRARY).exists() or shutil.which("softhsm2-util") is None:
        service_unavailable("SoftHSM2", FileNotFoundError(f"{LIBRARY} or softhsm2-util"))
    folder = tmp_path_factory.mktemp("softhsm")
    (folder / "tokens").mkdir()
    config = folder / "softhsm2.conf"
    config.write_text(f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\n")
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(config)
    for label in TOKENS:
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", label,
             "--pin", PIN, "--so-pin", "13579"],
            check=True, capture_output=True, env=os.environ,
        )  # fmt: skip
    yield list(TOKENS)
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous


def hsm_settings(settings: Settings, token: str) -> Settings:
    return settings.model_copy(
        update={
            "key_provider": "pkcs11",
            "pkcs11_library": LIBRARY,
            "pkcs11_token_label": token,
            "pkcs11_pin": SecretStr(PIN),
        }
    )


def test_data_keys_are_wrapped_inside_the_hsm(
    softhsm: list[str], settings: Settings, db: Database
) -> None:
    if not settings.is_sqlite:
        pytest.skip("one backend is enough: the HSM does not touch the database")
    import pkcs11

    configured = hsm_settings(settings, softhsm[0])
    with TestClient(create_app(configured)) as client:
        created = client.post(
            "/v1/customers",
            json={"username": "hana", "password": PASSWORD, "display_name": "H",
                  "phone": "+8613600000001"},
        )  # fmt: skip
        assert created.status_code == 201, created.text
    with db.read() as session:
        keys = session.scalars(select(DataKey)).all()
        customer = session.get(Customer, created.json()["id"])
        assert customer is not None
        contact = identity.personal_data(session, configured, customer)
    assert contact.phone == "+8613600000001"
    assert {(key.provider, key.kek_id) for key in keys} == {("pkcs11", "payguard-kek-1")}
    # The local keyring's KEK cannot open them: the wrapping happened in the token.
    local = Envelope(load_keyring(settings))
    with db.read() as session, pytest.raises(ValueError):
        local._unwrap(keys[0])
    # The KEK is sensitive and not extractable.
    hsm = envelope_for(configured).hsm
    assert hsm is not None
    kek = hsm._session.get_key(label="payguard-kek-1")  # the provider's logged-in session
    assert kek[pkcs11.Attribute.SENSITIVE] and not kek[pkcs11.Attribute.EXTRACTABLE]


def test_the_kek_rotates_inside_the_hsm(
    softhsm: list[str], settings: Settings, db: Database
) -> None:
    if not settings.is_sqlite:
        pytest.skip("one backend is enough: the HSM does not touch the database")
    configured = hsm_settings(settings, softhsm[1])
    envelope = envelope_for(configured)
    sealed = db.transact(lambda session: envelope.seal(session, "cus_h", "t.c.cus_h", "secret"))
    kek_id, rewrapped = db.transact(lambda session: rotation.rotate_kek(session, envelope))
    assert (kek_id, rewrapped) == ("payguard-kek-2", 1)
    assert db.transact(lambda session: rotation.retire_keks(session, envelope)) == [
        "payguard-kek-1"
    ]
    assert envelope.hsm is not None and envelope.hsm.kek_ids() == ["payguard-kek-2"]
    envelope._plain_keys.clear()
    with db.read() as session:
        assert envelope.open(session, "t.c.cus_h", sealed) == "secret"
        status = rotation.status(session, envelope)
    assert status["provider"] == "pkcs11" and status["active_kek"] == "payguard-kek-2"


def test_the_pin_is_required(softhsm: list[str], settings: Settings) -> None:
    configured = hsm_settings(settings, softhsm[2]).model_copy(update={"pkcs11_pin": None})
    with pytest.raises(ValueError, match="PAYGUARD_PKCS11_PIN"):
        envelope_for(configured)
