"""Merkle tree hashing and proofs as RFC 9162 (Certificate Transparency 2.0) §2.1 defines them.

The tree over leaves ``d[0:n]`` is ``MTH({}) = SHA-256()``, ``MTH({d}) = SHA-256(0x00 || d)`` and, for
n > 1 with k the largest power of two below n, ``SHA-256(0x01 || MTH(d[0:k]) || MTH(d[k:n]))``.
Leaves and inner nodes are hashed with different prefixes, so no inner node can pass for a leaf.

Proofs are built over a ``Subtree`` function (the hash of leaves ``[start, end)``), so the caller
decides where hashes come from: stored nodes for large aligned subtrees, leaf hashes for the rest.
Verification needs nothing but the proof, the way an outside monitor checks it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

Subtree = Callable[[int, int], bytes]

EMPTY = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes, computed bottom-up (for a range small enough to hold in memory)."""
    if not leaves:
        return EMPTY
    level = list(leaves)
    while len(level) > 1:
        # Pairing left to right and carrying an odd last node up is the same tree as §2.1.1's split.
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def inclusion_path(index: int, size: int, subtree: Subtree) -> list[bytes]:
    """PATH(m, D[n]) of §2.1.3.1 for leaf ``index`` in a tree of ``size`` leaves."""
    if not 0 <= index < size:
        raise ValueError("leaf index outside the tree")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = split(end - start)
        if index - start < k:
            path.append(subtree(start + k, end))
            end = start + k
        else:
            path.append(subtree(start, start + k))
            start += k
    path.reverse()  # the recursion appends from the top; the proof lists from the leaf up
    return path


def consistency_path(old: int, new: int, subtree: Subtree) -> list[bytes]:
    """PROOF(m, D[n]) of §2.1.4.1: that the tree of ``old`` leaves is a prefix of the one of ``new``."""
    if not 0 < old <= new:
        raise ValueError("consistency needs 0 < old <= new")
    proof: list[bytes] = []
    start, end, complete = 0, new, True
    m = old
    while m != end - start:
        k = split(end - start)
        if m <= k:
            proof.append(subtree(start + k, end))
            end = start + k
        else:
            proof.append(subtree(start, start + k))
            start += k
            m -= k
            complete = False
    if not complete:
        proof.append(subtree(start, end))
    proof.reverse()
    return proof


def verify_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes], root_hash: bytes) -> bool:
    """§2.1.3.2: does ``path`` prove leaf hash ``leaf`` at ``index`` in the tree with ``root_hash``?"""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root_hash


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """§2.1.4.2: does ``proof`` show the tree (old, old_root) is a prefix of (new, new_root)?"""
    if old == new:
        return not proof and old_root == new_root
    if not 0 < old < new or not proof:
        return False
    path = list(proof)
    if old & (old - 1) == 0:  # a power of two: the old root is itself the first node
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


class CompactRange:
    """The roots of the perfect subtrees covering ``[0, size)``, largest first: enough to add a leaf
    and to give the root of the tree so far in O(log n), for a single pass over every leaf."""

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[bytes] = []

    def append(self, leaf: bytes) -> None:
        self._stack.append(leaf)
        self.size += 1
        n = self.size
        while n & 1 == 0:  # merge each pair of equal subtrees the new leaf completed
            right = self._stack.pop()
            left = self._stack.pop()
            self._stack.append(node_hash(left, right))
            n >>= 1

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY
        r = self._stack[-1]
        for h in reversed(self._stack[:-1]):
            r = node_hash(h, r)
        return r
