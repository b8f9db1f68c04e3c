import pytest
import torch

from sqft.quantize.packing import pack_rows, pack_zeros, packed_rows, unpack_rows, unpack_zeros


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("n", [64, 96, 172, 7])
def test_pack_unpack_round_trip(bits, n):
    q = torch.randint(0, 2**bits, (n, 5), generator=torch.Generator().manual_seed(n), dtype=torch.int32)
    packed = pack_rows(q, bits)
    assert packed.dtype == torch.int32 and packed.shape == (packed_rows(n, bits), 5)
    assert torch.equal(unpack_rows(packed, bits, n), q)


def test_four_bit_lowest_bits_first():
    q = torch.arange(1, 9, dtype=torch.int32).unsqueeze(1)  # codes 1..8 in one column
    assert pack_rows(q, 4).item() == 0x87654321 - 2**32  # 0x87654321 read as a signed int32


def _gptq_3bit_reference(q: list[int]) -> list[int]:
    """GPTQ's published 3-bit layout for 32 codes → 3 words, written out field by field."""
    w = [0, 0, 0]
    for j in range(10):
        w[0] |= q[j] << (3 * j)
    w[0] |= (q[10] << 30) & 0xFFFFFFFF
    w[1] |= (q[10] >> 2) & 1
    for j in range(10):
        w[1] |= q[11 + j] << (3 * j + 1)
    w[1] |= (q[21] << 31) & 0xFFFFFFFF
    w[2] |= (q[21] >> 1) & 0x3
    for j in range(10):
        w[2] |= q[22 + j] << (3 * j + 2)
    return [x - 2**32 if x >= 2**31 else x for x in w]


def test_three_bit_matches_gptq_layout():
    q = torch.randint(0, 8, (32, 1), generator=torch.Generator().manual_seed(0), dtype=torch.int32)
    assert pack_rows(q, 3)[:, 0].tolist() == _gptq_3bit_reference(q[:, 0].tolist())


def test_zeros_pack_along_output_dim():
    zero = torch.randint(0, 16, (24, 3), generator=torch.Generator().manual_seed(1))  # (out, G)
    qzeros = pack_zeros(zero, 4)
    assert qzeros.shape == (3, 3)  # (G, out·4/32)
    assert torch.equal(unpack_zeros(qzeros, 4, 24), zero.to(torch.int32))
