"""RFC 6962 / RFC 9162 Merkle trees: tree hashes, inclusion and consistency proofs.

Leaf hash ``H(0x00 ‖ data)``, node hash ``H(0x01 ‖ left ‖ right)``, SHA-256 (the
``standard`` suite) or SM3 (``gm``), the split at the largest power of two below ``n``.
Proof *generation* follows RFC 6962 §2.1.1–2.1.2; *verification* follows RFC 9162
§2.1.3.2 and §2.1.4.2 and needs nothing but the hashes, so an auditor can run it
without our database. Everything here is pure and works on lists of 32-byte leaf hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

HashFunction = Callable[[bytes], bytes]


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf_hash(data: bytes, digest: HashFunction = sha256) -> bytes:
    return digest(b"\x00" + data)


def node_hash(left: bytes, right: bytes, digest: HashFunction = sha256) -> bytes:
    return digest(b"\x01" + left + right)


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes], digest: HashFunction = sha256) -> bytes:
    """MTH(D[n]) over leaf *hashes*; the empty tree hashes the empty string."""
    if not leaves:
        return digest(b"")
    # Iteratively, pairing left to right: equal to the recursive definition, because the
    # recursive split always leaves a perfect left subtree.
    level = list(leaves)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1], digest) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


class Frontier:
    """The roots of the perfect subtrees of a growing tree: O(log n) memory, so the
    root at every size is available in one pass over the leaves (``payguard audit verify``)."""

    def __init__(self, digest: HashFunction = sha256) -> None:
        self.digest = digest
        self.size = 0
        self._stack: list[tuple[int, bytes]] = []  # (height, hash), largest first

    def append(self, leaf: bytes) -> None:
        height, value = 0, leaf
        while self._stack and self._stack[-1][0] == height:
            _, left = self._stack.pop()
            value = node_hash(left, value, self.digest)
            height += 1
        self._stack.append((height, value))
        self.size += 1

    def nodes(self) -> list[tuple[int, bytes]]:
        """The state to store: (height, hash) of each perfect subtree, largest first."""
        return list(self._stack)

    def restore(self, size: int, nodes: list[tuple[int, bytes]]) -> None:
        if sum(1 << height for height, _ in nodes) != size:
            raise ValueError("the stored frontier does not add up to its tree size")
        self._stack, self.size = list(nodes), size

    def root(self) -> bytes:
        if not self._stack:
            return self.digest(b"")
        value = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            value = node_hash(left, value, self.digest)
        return value


def inclusion_proof(
    index: int, leaves: Sequence[bytes], digest: HashFunction = sha256
) -> list[bytes]:
    """PATH(m, D[n]): the audit path of leaf ``index`` in the tree of ``leaves``."""
    if not 0 <= index < len(leaves):
        raise ValueError("the leaf index is outside the tree")
    return _path(index, leaves, digest)


def _path(index: int, leaves: Sequence[bytes], digest: HashFunction) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return [*_path(index, leaves[:k], digest), root(leaves[k:], digest)]
    return [*_path(index - k, leaves[k:], digest), root(leaves[:k], digest)]


def consistency_proof(
    first: int, leaves: Sequence[bytes], digest: HashFunction = sha256
) -> list[bytes]:
    """PROOF(m, D[n]): shows the tree of size ``first`` is a prefix of ``leaves``."""
    if not 0 < first <= len(leaves):
        raise ValueError("the first size must be between 1 and the tree size")
    return _subproof(first, leaves, True, digest)


def _subproof(m: int, leaves: Sequence[bytes], whole: bool, digest: HashFunction) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [root(leaves, digest)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], whole, digest), root(leaves[k:], digest)]
    return [*_subproof(m - k, leaves[k:], False, digest), root(leaves[:k], digest)]


def verify_inclusion(
    index: int,
    size: int,
    leaf: bytes,
    proof: Sequence[bytes],
    expected_root: bytes,
    digest: HashFunction = sha256,
) -> bool:
    """RFC 9162 §2.1.3.2."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r, digest)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p, digest)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def verify_consistency(
    first: int,
    second: int,
    first_root: bytes,
    second_root: bytes,
    proof: Sequence[bytes],
    digest: HashFunction = sha256,
) -> bool:
    """RFC 9162 §2.1.4.2."""
    if first > second or first < 1:
        return False
    if first == second:
        return not proof and first_root == second_root
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first root is the first node
        path.insert(0, first_root)
    if not path:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr, digest)
            sr = node_hash(c, sr, digest)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c, digest)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root
