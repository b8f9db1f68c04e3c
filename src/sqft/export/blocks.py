"""The tensor math of the GGUF export, as pure functions: Q4_1 / Q8_0 blocks and llama.cpp's q/k row order.

Q4_1 (ggml `block_q4_1`, 20 bytes per 32 weights): fp16 `d`, fp16 `m`, then 16 bytes of nibbles where byte j holds
weight j in its low nibble and weight j + 16 in its high nibble; `w = d·q + m`, q ∈ [0, 15]. sqft's asymmetric
INT4 `ŵ = s·(q − z)` is the same with `d = s` and `m = −s·z`: sqft's fp16 scales make `d` exact, and `m` rounds
once to fp16, so every weight moves by at most half an fp16 ulp of its group's `m` (exactly 0 for a symmetric
model, z = 8, since −8·s is a power-of-two multiple of an fp16 number). A pruned weight (q = z) becomes
`d·z + fp16(−d·z)`, the rounding error of `m`: not exactly 0, at most ulp(m)/2.

Q8_0 (`block_q8_0`, 34 bytes per 32 weights): fp16 `d = max|w|/127`, int8 `q = roundf(w/d)`, `w = d·q`; written for
floating-point weights on request, with ggml's reference rounding.
"""

from __future__ import annotations

import torch

from sqft.errors import SqftError

__all__ = [
    "QK",
    "Q4_1_BYTES",
    "Q8_0_BYTES",
    "q4_1_params",
    "q4_1_blocks",
    "q4_1_unpack",
    "q8_0_blocks",
    "permute_qk",
    "unpermute_qk",
    "fp16_ulp",
]

QK = 32  # weights per ggml block (QK4_1 = QK8_0 = 32)
Q4_1_BYTES = 4 + QK // 2  # d, m (fp16 each) + 16 bytes of nibbles
Q8_0_BYTES = 2 + QK  # d (fp16) + 32 int8


def _fp16_bytes(x: torch.Tensor) -> torch.Tensor:
    """fp16 (..., n) → its little-endian bytes uint8 (..., n, 2)."""
    return x.to(torch.float16).contiguous().view(torch.uint8).view(*x.shape, 2)


def q4_1_params(scale: torch.Tensor, zero: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Q4_1's (d, m) of each group from sqft's fp16 scale and integer zero point (out, G): d = s, m = −s·z.

    −s·z is exact in fp32 (an fp16 number times an integer ≤ 15); the one rounding is m to fp16.
    """
    s = scale.to(torch.float16)
    if not torch.equal(s.float(), scale.float()):
        raise SqftError("INT4 scales are not fp16 values: Q4_1 stores d in fp16 and would round them")
    return s, (-s.float() * zero.float()).to(torch.float16)


def q4_1_blocks(q: torch.Tensor, d: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Codes q (out, in) in [0, 15] with per-group d, m fp16 (out, G) → Q4_1 bytes uint8 (out, in/32 · 20).

    Each group of in/G weights (a multiple of 32) is split into blocks of 32 that share the group's d and m.
    """
    out, n_in = q.shape
    G = d.shape[1]
    if n_in % QK or (n_in // G) % QK:
        raise SqftError(f"Q4_1 needs groups of a multiple of {QK} weights; got in={n_in}, {G} groups")
    if int(q.min()) < 0 or int(q.max()) > 15:
        raise SqftError("Q4_1 holds 4-bit codes in [0, 15]")
    nb = n_in // QK
    per = nb // G  # blocks per group
    qb = q.to(torch.uint8).view(out, nb, QK)  # (out, nb, 32)
    qs = qb[..., : QK // 2] | (qb[..., QK // 2 :] << 4)  # (out, nb, 16): byte j = q_j | q_{j+16} << 4
    d_b = _fp16_bytes(d.repeat_interleave(per, dim=1))  # (out, nb, 2)
    m_b = _fp16_bytes(m.repeat_interleave(per, dim=1))  # (out, nb, 2)
    return torch.cat([d_b, m_b, qs], dim=-1).view(out, nb * Q4_1_BYTES)


def q4_1_unpack(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Q4_1 bytes uint8 (out, nb·20) → codes q uint8 (out, nb·32), d and m fp16 (out, nb): per block."""
    out = blocks.shape[0]
    b = blocks.contiguous().view(out, -1, Q4_1_BYTES)  # (out, nb, 20)
    d = b[..., 0:2].contiguous().view(torch.float16).squeeze(-1)  # (out, nb)
    m = b[..., 2:4].contiguous().view(torch.float16).squeeze(-1)  # (out, nb)
    qs = b[..., 4:]  # (out, nb, 16)
    q = torch.cat([qs & 0x0F, qs >> 4], dim=-1)  # (out, nb, 32)
    return q.reshape(out, -1), d, m


def _roundf(x: torch.Tensor) -> torch.Tensor:
    """C's roundf: halves away from zero (torch.round rounds them to even)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def q8_0_blocks(w: torch.Tensor) -> torch.Tensor:
    """Weights (rows, cols) → Q8_0 bytes uint8 (rows, cols/32 · 34), as ggml's reference quantizer does."""
    rows, cols = w.shape
    if cols % QK:
        raise SqftError(f"Q8_0 needs rows of a multiple of {QK} weights; got {cols}")
    x = w.float().reshape(rows, cols // QK, QK)  # (rows, nb, 32)
    d = x.abs().amax(dim=-1, keepdim=True) / 127  # (rows, nb, 1) fp32
    inv = torch.where(d == 0, torch.zeros_like(d), 1.0 / d)
    qs = _roundf(x * inv).to(torch.int8).view(torch.uint8)  # (rows, nb, 32)
    return torch.cat([_fp16_bytes(d.squeeze(-1)), qs], dim=-1).view(rows, -1)


def permute_qk(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """Rows of a q/k projection (weight, codes, scales or bias; dim 0 = n_head·head_dim) in llama.cpp's order.

    HF Llama rotates the two halves of each head (rotate_half); llama.cpp's kernels rotate adjacent pairs, so
    its converter interleaves each head's halves: row (h, i, j) of shape (n_head, 2, head_dim/2) goes to (h, j, i).
    """
    rows = x.shape[0]
    if rows % (2 * n_head):
        raise SqftError(f"cannot split {rows} rows into {n_head} heads of an even size")
    return x.reshape(n_head, 2, rows // n_head // 2, *x.shape[1:]).transpose(1, 2).reshape(x.shape)


def unpermute_qk(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """The inverse of `permute_qk` (what a GGUF reader applies to get HF's row order back)."""
    rows = x.shape[0]
    return x.reshape(n_head, rows // n_head // 2, 2, *x.shape[1:]).transpose(1, 2).reshape(x.shape)


def fp16_ulp(x: torch.Tensor) -> torch.Tensor:
    """The spacing of fp16 numbers at |x| (fp32): 2^(e − 10) for normal numbers, 2^−24 below 2^−14."""
    _, e = torch.frexp(x.float().abs().clamp(min=2.0**-14))  # |x| = f·2^e with f ∈ [0.5, 1)
    return torch.exp2((e - 11).float())
