"""Bit packing of b-bit codes into int32 words, as GPTQ checkpoints store them.

Codes along dim 0 form one little-endian bit stream per column: code k occupies bits [k·b, k·b + b) of the
stream, word w holds stream bits [32w, 32w + 32), lowest bits first. For b = 2, 4, 8 that is 32/b codes per
word; for b = 3 it is GPTQ's layout of 32 codes in 3 words, with codes 10 and 21 crossing word boundaries.
A stream whose length is not a multiple of 32 bits is zero-padded to a whole word.
"""

from __future__ import annotations

import torch

__all__ = ["SUPPORTED_BITS", "packed_rows", "pack_rows", "unpack_rows", "pack_zeros", "unpack_zeros"]

SUPPORTED_BITS = (2, 3, 4, 8)
_MASK32 = (1 << 32) - 1


def packed_rows(n: int, bits: int) -> int:
    """Number of int32 words that hold n codes of `bits` bits."""
    return -(-n * bits // 32)


def _offsets(n: int, bits: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    bit = torch.arange(n, device=device, dtype=torch.int64) * bits  # (n,) stream offset of each code
    return bit // 32, bit % 32  # word index, shift inside the word


def pack_rows(q: torch.Tensor, bits: int) -> torch.Tensor:
    """Codes (n, m) in [0, 2^b − 1] → int32 (ceil(n·b/32), m), packed along dim 0."""
    assert bits in SUPPORTED_BITS, bits
    n, m = q.shape
    words = packed_rows(n, bits)
    word, shift = _offsets(n, bits, q.device)
    v = q.to(torch.int64) << shift.unsqueeze(1)  # (n, m), up to 39 bits
    acc = torch.zeros(words + 1, m, dtype=torch.int64, device=q.device)
    acc.index_add_(0, word, v & _MASK32)  # bit fields are disjoint, so a sum is a bitwise or
    acc.index_add_(0, word + 1, v >> 32)  # the part that spills into the next word
    acc = acc[:words]
    return torch.where(acc >= 1 << 31, acc - (1 << 32), acc).to(torch.int32)  # reinterpret as signed


def unpack_rows(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """int32 (ceil(n·b/32), m) → codes int32 (n, m): the inverse of `pack_rows`."""
    assert bits in SUPPORTED_BITS, bits
    assert packed.shape[0] == packed_rows(n, bits), (packed.shape, n, bits)
    if 32 % bits == 0:  # 2, 4, 8 bits: whole codes per word, so shifts alone unpack (no gathers)
        per = 32 // bits
        shifts = torch.arange(0, 32, bits, device=packed.device, dtype=torch.int32).view(1, per, 1)
        v = (packed.unsqueeze(1) >> shifts).bitwise_and_((1 << bits) - 1)  # (words, per, m); & drops the sign
        return v.reshape(-1, packed.shape[1])[:n]
    u = packed.to(torch.int64) & _MASK32  # (words, m) unsigned
    u = torch.cat([u, torch.zeros_like(u[:1])])
    word, shift = _offsets(n, bits, packed.device)
    s = shift.unsqueeze(1)
    v = (u[word] >> s) | (u[word + 1] << (32 - s))  # (n, m)
    return (v & ((1 << bits) - 1)).to(torch.int32)


def pack_zeros(zero: torch.Tensor, bits: int) -> torch.Tensor:
    """Zero points (out, G) → `qzeros` int32 (G, ceil(out·b/32)), packed along the output dimension."""
    return pack_rows(zero.to(torch.int64), bits).T.contiguous()


def unpack_zeros(qzeros: torch.Tensor, bits: int, out_features: int) -> torch.Tensor:
    """`qzeros` (G, ceil(out·b/32)) → zero points int32 (out, G)."""
    return unpack_rows(qzeros.T, bits, out_features)
