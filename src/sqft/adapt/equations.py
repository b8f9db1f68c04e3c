"""The adapter equations of the paper, as pure tensor functions (§2.2 NLS, §2.3 SparsePEFT, §2.4 QA-SparsePEFT).

    A_r, B_r = A[:r], B[:, :r]                                      NLS: the active rank r of an elastic adapter
    L   = s · (B A) ⊙ M                                             SparsePEFT delta (M = 1[W ≠ 0]; 1 when dense)
    W_m = W + L                                                     merged weight
    Q   = clamp(round(W_m / s_q) + z, 0, 2^b − 1),  Ŵ = s_q (Q − z)  QA-SparsePEFT (eq. 3)
    Q   = clamp(q + round(L / s_q), 0, 2^b − 1)                     the same on an INT-b base W = s_q (q − z)
    Q   = clamp(q + round(u + L / s_q), 0, 2^b − 1)                 ... with a dithered base W = s_q (q − z + u)
    u   = clamp(W / s_q − (q − z), −½, ½),  W_g = s_q (q − z + u)    the fp16 weight moved into its GPTQ code's bin

Every rounding goes through `quantize.primitives.round_to_grid_`. Weight algebra is done in fp32; the callers
cast to the compute dtype once. Shapes: W, L, M (out, in); A (r, in); B (out, r); s_q, z (out, G).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sqft.quantize.primitives import round_to_grid_

__all__ = [
    "QAParams",
    "nls_slice",
    "pack_mask",
    "unpack_mask",
    "masked_delta",
    "masked_delta_",
    "quant_codes",
    "fake_quant_groups",
    "requantized_codes",
    "dither_offsets",
    "bin_position",
    "in_bin_residual",
    "snapped_to_bins",
    "low_rank_t",
    "int4_requantized",
    "int4_pruned_t",
]


@dataclass
class QAParams:
    """Frozen quantization parameters of one linear: scale, zero (out, G) fp32, bits and group size."""

    scale: torch.Tensor  # (out, G)
    zero: torch.Tensor  # (out, G)
    bits: int
    group_size: int
    sym: bool = False


def nls_slice(A: torch.Tensor, B: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The rank-r sub-adapter of an elastic one: A[:r] (r, in), B[:, :r] (out, r); s stays α / r_max."""
    return A[:r], B[:, :r]


def pack_mask(M: torch.Tensor) -> torch.Tensor:
    """M (out, in) bool → (out, ⌈in/8⌉) uint8: bit j of byte k is M[:, 8k + j]. One bit per weight, not a byte."""
    out, n_in = M.shape
    Mb = F.pad(M.to(torch.uint8), (0, (-n_in) % 8)).view(out, -1, 8)  # (out, ⌈in/8⌉, 8)
    shifts = torch.arange(8, dtype=torch.uint8, device=M.device)
    return (Mb << shifts).sum(-1, dtype=torch.uint8)  # distinct bits: the sum is their OR


def unpack_mask(P: torch.Tensor, n_in: int) -> torch.Tensor:
    """Inverse of `pack_mask`: (out, ⌈in/8⌉) uint8 → (out, in) bool."""
    shifts = torch.arange(8, dtype=torch.uint8, device=P.device)
    bits = (P.unsqueeze(-1) >> shifts).bitwise_and_(1)  # (out, ⌈in/8⌉, 8), each 0 or 1
    return bits.view(P.shape[0], -1)[:, :n_in].view(torch.bool)  # 0/1 bytes are bools: no copy


def masked_delta(A: torch.Tensor, B: torch.Tensor, s: float, M: torch.Tensor | None) -> torch.Tensor:
    """L = s · (B A) ⊙ M in fp32. A (r, in), B (out, r), M (out, in) bool or None → (out, in)."""
    return masked_delta_(A, B, s, None if M is None else M.logical_not())


def masked_delta_(A: torch.Tensor, B: torch.Tensor, s: float, pruned: torch.Tensor | None) -> torch.Tensor:
    """`masked_delta` from the pruned positions 1 − M, zeroed in place (a product with M would first copy M to
    fp32, a weight-sized buffer)."""
    L = (B.float() @ A.float()).mul_(s)  # (out, in)
    return L.masked_fill_(pruned, 0.0) if pruned is not None else L


def _grouped(W: torch.Tensor, qa: QAParams) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """View W (out, in) as (out, G, gs) with scale/zero (out, G, 1), padding in to a multiple of gs."""
    out, n_in = W.shape
    G = qa.scale.shape[1]
    gs = -(-n_in // G)
    if G * gs != n_in:
        W = F.pad(W, (0, G * gs - n_in))
    return W.view(out, G, gs), qa.scale.float()[:, :, None], qa.zero.float()[:, :, None]


def quant_codes(W_m: torch.Tensor, qa: QAParams) -> torch.Tensor:
    """Q = clamp(round(W_m / s_q) + z, 0, 2^b − 1) as int32 (out, in)."""
    n_in = W_m.shape[1]
    Wg, sq, z = _grouped(W_m.float(), qa)
    Q = round_to_grid_(Wg / sq, z, qa.bits)  # (out, G, gs)
    return Q.flatten(1)[:, :n_in].to(torch.int32)


def fake_quant_groups(W_m: torch.Tensor, qa: QAParams) -> torch.Tensor:
    """Ŵ = s_q (Q − z) in fp32 (out, in) — the weight the merged INT4 layer dequantizes to."""
    n_in = W_m.shape[1]
    Wg, sq, z = _grouped(W_m.float(), qa)
    Q = round_to_grid_(Wg / sq, z, qa.bits)  # (out, G, gs)
    return Q.sub_(z).mul_(sq).flatten(1)[:, :n_in]


def requantized_codes(
    q: torch.Tensor, L: torch.Tensor, scale: torch.Tensor, bits: int, u: torch.Tensor | None = None
) -> torch.Tensor:
    """Q = clamp(q + round(L / s_q), 0, 2^b − 1): eq. 3 on an INT-b base, in integer form. fp32, shape of L.

    The base is W = s_q (q − z) exactly, so round(W_m / s_q) + z = q + round(L / s_q) with no fp round trip
    through W (an exact tie L / s_q = k + ½ rounds to even in L / s_q, not in the sum). q, L: (G, gs, out)
    in the stored (in, out) layout; scale (G, 1, out). Where L = 0 (pruned: M = 0) Q = q exactly.
    With dither offsets `u` ∈ [−½, ½) (`dither_offsets`) the base is W = s_q (q − z + u): Q = q + round(u + L / s_q),
    still q where L = 0, but a code moves as soon as L pushes its weight across the nearer bin edge.
    """
    t = L / scale
    if u is not None:
        t.add_(u)
    return round_to_grid_(t, q, bits)


def dither_offsets(shape: tuple[int, ...], seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """u ~ U[−½, ½) fp32 of `shape`, the same for a given seed on a given device (regenerated, never stored).

    The position of a dithered GPTQ weight inside its quantization bin, in units of s_q: `round(u) = 0`, so the
    starting codes are GPTQ's, while the trained weight sits anywhere in its bin — as an fp16 weight does — and
    E_u[round(u + L / s_q)] = L / s_q for |L| < s_q / 2: the codes follow L on average from the first step.
    """
    gen = torch.Generator(device=device).manual_seed(seed)
    return torch.rand(shape, generator=gen, device=device).sub_(0.5)


def bin_position(W: torch.Tensor, q: torch.Tensor, qa: QAParams) -> torch.Tensor:
    """W / s_q − (q − z) fp32 (out, in): where W lies relative to the centre of code q's bin, in units of s_q
    (within (−½, ½) exactly where q is W's own code). W, q (out, in); s_q, z in `qa` (out, G)."""
    n_in = W.shape[1]
    Wg, sq, z = _grouped(W.float(), qa)  # (out, G, gs), (out, G, 1)
    qg, _, _ = _grouped(q.float(), qa)
    return (Wg / sq).sub_(qg - z).flatten(1)[:, :n_in]


def in_bin_residual(W: torch.Tensor, q: torch.Tensor, qa: QAParams, edge: float = 2.0**-6) -> torch.Tensor:
    """u = clamp(W / s_q − (q − z), −½ + edge, ½ − edge) fp32 (out, in): where the fp16 weight W lies relative to
    the centre of its GPTQ code q's bin, in units of s_q. Where round-to-nearest agrees with GPTQ it is the
    weight's exact position (within `edge` of the bin's edges: the edge − `edge`, so that it never ties); where
    GPTQ chose a neighbouring code it is that bin's edge nearest to W. (q − z) is an exact integer, so a small W
    keeps its value: u = 0 only where W = 0 and q = z.
    W, q (out, in); s_q, z in `qa` (out, G)."""
    return bin_position(W, q, qa).clamp_(-0.5 + edge, 0.5 - edge)


def snapped_to_bins(W: torch.Tensor, q: torch.Tensor, qa: QAParams, edge: float = 2.0**-6) -> torch.Tensor:
    """W_g = s_q (q − z + u) fp32 (out, in), u = `in_bin_residual`: the base of qa_base = gptq-residual. Its codes
    are GPTQ's, `quant_codes(W_g) = q`, so the QA forward starts at the GPTQ model; and it keeps the fp16 weight's
    position inside the bin, so, unlike a base on the grid (u = 0), a code moves as soon as L pushes it across
    the nearer edge. W_g = W (to fp32 rounding) wherever GPTQ's code is round-to-nearest's and W is not within
    `edge`·s_q of the bin's edges; W_g = 0 exactly where W = 0 and q = z."""
    n_in = W.shape[1]
    u = in_bin_residual(W, q, qa, edge)
    ug, sq, z = _grouped(u, qa)
    qg, _, _ = _grouped(q.float(), qa)
    return (qg - z).add_(ug).mul_(sq).flatten(1)[:, :n_in]


def low_rank_t(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """(B A)ᵀ = Aᵀ Bᵀ (in, out) in fp32, in the INT4 base's stored layout."""
    return A.float().T @ B.float().T


def int4_requantized(
    q: torch.Tensor,
    scale: torch.Tensor,
    zero: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    s: float,
    bits: int,
    pruned: torch.Tensor | None,
    u: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """QA-SparsePEFT on an INT-b base, in its stored (in, out) layout: (Q, Lᵀ), each (G, gs, out).

    q (in, out) int codes, scale (G, out), A (r, in), B (out, r); `pruned` = `int4_pruned_t(q, z)` for
    QA-SparsePEFT (M = 1[q ≠ z] comes from the codes, as the base weight is exactly 0 where q = z, so no mask is
    stored), None for a dense adapter. L = s (B A) ⊙ M; Q by `requantized_codes` (dithered by `u` (in, out) when
    given). Training and merge both call this, so the merged codes come from the very same arithmetic.
    """
    n_in, out = q.shape
    G = scale.shape[0]
    L_t = low_rank_t(A, B).mul_(s)  # (in, out)
    if pruned is not None:
        L_t.masked_fill_(pruned, 0.0)
    q, L_t = q.view(G, n_in // G, out), L_t.view(G, -1, out)  # (G, gs, out)
    u = None if u is None else u.view(G, -1, out)
    return requantized_codes(q, L_t, scale.unsqueeze(1), bits, u), L_t


def int4_pruned_t(q: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """(1 − M)ᵀ = 1[q = z] (in, out) bool from codes q (in, out) and zero points (G, out) (integer-valued: the
    comparison runs in q's integer type)."""
    G, out = zero.shape
    return (q.view(G, -1, out) == zero.to(q.dtype).unsqueeze(1)).view(q.shape)
