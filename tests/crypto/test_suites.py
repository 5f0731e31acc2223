"""Known-answer tests of both suites against their published vectors."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from payguard.crypto import suites
from payguard.crypto.suites import DecryptionFailed


def test_sm3_gb_t_32905_examples() -> None:
    assert suites.sm3(b"abc").hex() == (
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    )
    assert suites.sm3(b"abcd" * 16).hex() == (
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    )


def test_sm4_gb_t_32907_examples() -> None:
    key = bytes.fromhex("0123456789abcdeffedcba9876543210")
    encryptor = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    block = encryptor.update(key)
    assert block.hex() == "681edf34d206965e86b3e94f536e4246"
    for _ in range(999_999):  # the standard's second example: a million encryptions
        block = encryptor.update(block)
    assert block.hex() == "595298c7c6fd271f0402f804c33d3f66"


def test_sm4_gcm_rfc_8998_vector() -> None:
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    nonce = bytes.fromhex("00001234567800000000ABCD")
    aad = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    plaintext = bytes.fromhex(
        "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
        "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"
    )
    sealed = suites.suite("gm").encrypt(key, nonce, plaintext, aad)
    assert sealed[:-16].hex().upper() == (
        "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
        "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
    )
    assert sealed[-16:].hex().upper() == "83DE3541E4C2B58177E065A9BF7B62EC"
    assert suites.suite("gm").decrypt(key, nonce, sealed, aad) == plaintext
    with pytest.raises(DecryptionFailed):
        suites.suite("gm").decrypt(key, nonce, sealed, aad + b"x")


def test_aes_256_gcm_test_case_14() -> None:
    # McGrew and Viega, "The Galois/Counter Mode of Operation", test case 14.
    sealed = suites.suite("standard").encrypt(bytes(32), bytes(12), bytes(16), b"")
    assert sealed.hex() == ("cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919")
    with pytest.raises(DecryptionFailed):
        suites.suite("standard").decrypt(bytes(32), bytes(12), sealed[:-1] + b"\0", b"")


def test_ed25519_rfc_8032_test_1() -> None:
    secret = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    signature = suites.ed25519_sign(secret, b"")
    assert signature.hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
        "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    assert suites.ed25519_verify(public, signature, b"")
    assert not suites.ed25519_verify(public, signature, b"x")


def test_sm2_gm_t_0003_example() -> None:
    # GM/T 0003.5 example on the recommended curve: message "message digest", the
    # default user id 1234567812345678, the given private key and nonce.
    private = bytes.fromhex("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8")
    public = bytes.fromhex(
        "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
        "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
    )
    nonce = int("59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21", 16)
    signature = suites.sm2_sign(private, public, b"message digest", k=nonce)
    assert signature.hex().upper() == (
        "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
        "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
    )
    assert suites.sm2_verify(public, signature, b"message digest")
    assert not suites.sm2_verify(public, signature, b"message digesT")
    fresh_private, fresh_public = suites.sm2_keypair()
    fresh = suites.sm2_sign(fresh_private, fresh_public, b"tree head")
    assert suites.sm2_verify(fresh_public, fresh, b"tree head")
    assert not suites.sm2_verify(public, fresh, b"tree head")
