"""The ``pkcs11`` key provider: the KEK lives in an HSM and never leaves it.

KEKs are AES-256 keys generated inside the token (``payguard-kek-1``, ``-2``, …; sensitive,
not extractable). Wrapping a data key is ``CKM_AES_GCM`` encryption inside the HSM with
the data key's id as associated data; unwrapping is the matching decryption, also inside
the HSM. Rotation generates the next KEK in the token. Tested against SoftHSM2.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from payguard.settings import Settings

LABEL_PREFIX = "payguard-kek-"


class Pkcs11Kek:
    """KEK operations in one PKCS#11 token (one session per process, serialised)."""

    def __init__(self, library: str, token_label: str, pin: str) -> None:
        import pkcs11

        self._pkcs11 = pkcs11
        self._token = pkcs11.lib(library).get_token(token_label=token_label)
        self._session: Any = self._token.open(user_pin=pin, rw=True)
        self._lock = threading.Lock()
        if not self.kek_ids():
            self._generate(1)

    # ------------------------------------------------------------ keys

    def kek_ids(self) -> list[str]:
        labels = [
            str(key.label)
            for key in self._session.get_objects(
                {self._pkcs11.Attribute.CLASS: self._pkcs11.ObjectClass.SECRET_KEY}
            )
            if str(key.label).startswith(LABEL_PREFIX)
        ]
        return sorted(labels, key=lambda label: int(label.removeprefix(LABEL_PREFIX)))

    @property
    def active_kek_id(self) -> str:
        return self.kek_ids()[-1]

    def _generate(self, number: int) -> str:
        pkcs11 = self._pkcs11
        label = f"{LABEL_PREFIX}{number}"
        self._session.generate_key(
            pkcs11.KeyType.AES,
            256,
            label=label,
            store=True,
            template={pkcs11.Attribute.SENSITIVE: True, pkcs11.Attribute.EXTRACTABLE: False},
            capabilities=pkcs11.MechanismFlag.ENCRYPT | pkcs11.MechanismFlag.DECRYPT,
        )
        return label

    def rotate(self) -> str:
        with self._lock:
            ids = self.kek_ids()
            return self._generate(int(ids[-1].removeprefix(LABEL_PREFIX)) + 1)

    def drop(self, kek_id: str) -> None:
        with self._lock:
            if kek_id == self.active_kek_id:
                raise ValueError("the active key-encryption key cannot be dropped")
            self._session.get_key(label=kek_id).destroy()

    # ------------------------------------------------------------ wrap / unwrap

    def wrap(self, key: bytes, aad: bytes) -> tuple[bytes, str]:
        from pkcs11.mechanisms import GCMParams

        with self._lock:
            kek_id = self.active_kek_id
            nonce = os.urandom(12)
            sealed = self._session.get_key(label=kek_id).encrypt(
                key, mechanism=self._pkcs11.Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, aad)
            )
        return nonce + bytes(sealed), kek_id

    def unwrap(self, wrapped: bytes, aad: bytes, kek_id: str) -> bytes:
        from pkcs11.mechanisms import GCMParams

        with self._lock:
            try:
                plain = self._session.get_key(label=kek_id).decrypt(
                    wrapped[12:],
                    mechanism=self._pkcs11.Mechanism.AES_GCM,
                    mechanism_param=GCMParams(wrapped[:12], aad),
                )
            except self._pkcs11.PKCS11Error as error:
                raise ValueError(f"the HSM refused to unwrap with {kek_id}") from error
        return bytes(plain)


_PROVIDERS: dict[tuple[str, str], Pkcs11Kek] = {}


def hsm_for(settings: Settings) -> Pkcs11Kek:
    """The token of these settings, opened once per process."""
    if settings.pkcs11_pin is None:
        raise ValueError("PAYGUARD_PKCS11_PIN is required with PAYGUARD_KEY_PROVIDER=pkcs11")
    slot = (settings.pkcs11_library, settings.pkcs11_token_label)
    found = _PROVIDERS.get(slot)
    if found is None:
        found = _PROVIDERS[slot] = Pkcs11Kek(
            settings.pkcs11_library,
            settings.pkcs11_token_label,
            settings.pkcs11_pin.get_secret_value(),
        )
    return found
