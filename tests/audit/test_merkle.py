"""RFC 6962 tree hashes against the Certificate Transparency test vectors, and proofs
generated here verified by the RFC 9162 algorithms (and refused when anything is off)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payguard.audit import merkle

# The eight leaves and roots of certificate-transparency's merkle tree tests.
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
LEAVES = [merkle.leaf_hash(data) for data in CT_LEAVES]


def test_the_empty_tree_hashes_the_empty_string() -> None:
    assert merkle.root([]).hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_the_certificate_transparency_vectors(size: int) -> None:
    assert merkle.root(LEAVES[:size]).hex() == CT_ROOTS[size - 1]
    frontier = merkle.Frontier()
    for leaf in LEAVES[:size]:
        frontier.append(leaf)
    assert frontier.root().hex() == CT_ROOTS[size - 1]


def test_a_stored_frontier_continues_where_it_stopped() -> None:
    first = merkle.Frontier()
    for leaf in LEAVES[:5]:
        first.append(leaf)
    resumed = merkle.Frontier()
    resumed.restore(first.size, first.nodes())
    for leaf in LEAVES[5:]:
        resumed.append(leaf)
    assert resumed.root().hex() == CT_ROOTS[7]
    with pytest.raises(ValueError):
        merkle.Frontier().restore(6, first.nodes())


def _tree(size: int) -> list[bytes]:
    return [merkle.leaf_hash(index.to_bytes(4, "big")) for index in range(size)]


@given(st.integers(min_value=1, max_value=80), st.data())
def test_every_inclusion_proof_verifies_and_a_wrong_leaf_does_not(
    size: int, data: st.DataObject
) -> None:
    leaves = _tree(size)
    root = merkle.root(leaves)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    proof = merkle.inclusion_proof(index, leaves)
    assert merkle.verify_inclusion(index, size, leaves[index], proof, root)
    assert not merkle.verify_inclusion(index, size, merkle.leaf_hash(b"forged"), proof, root)
    if size > 1:
        assert not merkle.verify_inclusion((index + 1) % size, size, leaves[index], proof, root)
    if proof:
        bent = [bytes(32), *proof[1:]]
        assert not merkle.verify_inclusion(index, size, leaves[index], bent, root)


@given(st.integers(min_value=1, max_value=80), st.data())
def test_every_consistency_proof_verifies_and_a_rewritten_history_does_not(
    size: int, data: st.DataObject
) -> None:
    leaves = _tree(size)
    first = data.draw(st.integers(min_value=1, max_value=size))
    proof = merkle.consistency_proof(first, leaves)
    old_root, new_root = merkle.root(leaves[:first]), merkle.root(leaves)
    assert merkle.verify_consistency(first, size, old_root, new_root, proof)
    rewritten = [merkle.leaf_hash(b"rewritten"), *leaves[1:first]]
    assert not merkle.verify_consistency(first, size, merkle.root(rewritten), new_root, proof)
    if first < size:
        assert not merkle.verify_consistency(first, size, old_root, merkle.root(leaves[1:]), proof)
