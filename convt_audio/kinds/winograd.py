"""Dilated convolutions with fewer multiplications: Winograd's minimal filtering, tiled.

A convolution's outputs are cut into tiles of ``m`` outputs (every ``dilation``-th frame), its
kernel into segments of ``m`` taps (zero taps past the end). Each tile's ``m`` outputs from one
segment are the correlation ``F(m, m)`` of ``2m − 1`` inputs with ``m`` taps, which Toom–Cook
evaluates at ``2m − 1`` points with one multiplication each instead of ``m²``::

    inputs  (one phase of the dilation):  x0 x1 x2 x3 x4 x5 x6 x7 x8 x9 ...      m = 4
    tile b, segment 0 reads                x0 ........... x6
    tile b, segment 1 reads                            x4 .............. x10
    -> segment j of tile b reads the inputs of segment 0 of tile b + j: each tile's inputs are
       transformed once, and every segment multiplies the same transformed inputs

Per point the multiplications are one matrix product over channels, ``[tiles, C_in] @ [C_in,
C_out]``, summed over segments. Kernel 11 at ``m = 4``: 3 segments × 7 points for 4 outputs,
21 products of ``C_in × C_out`` against 44 (0.48×); kernel 7: 14 against 28 (0.5×).

Same sums in another order through exact rational transforms (points 0, ±1, ±1/2, 2 and
infinity): float rounding differs from the direct convolution's (measured on HiFi-GAN V1's
layers: 1.2–2.8e-6 of a layer's peak in float32 against 0.3–1.7e-6 for oneDNN's), nothing else.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import torch

TILE = 4  # outputs per tile, taps per segment: m
POINTS = (0, 1, -1, Fraction(1, 2), Fraction(-1, 2), 2)  # and infinity: 2m - 1 points


@lru_cache(maxsize=None)
def transforms(m: int = TILE) -> tuple:
    """``(AT, G, BT)`` of ``F(m, m)`` as nested tuples of Fractions: ``y = AT·[(G·g) ⊙ (BT·d)]``
    is the correlation ``y_i = Σ_k g_k d_{i+k}`` of ``2m − 1`` inputs ``d`` with ``m`` taps ``g``.

    Toom–Cook by the transposition principle: with ``V_n`` evaluating a polynomial of degree
    ``< n`` at the points (infinity: its leading coefficient), the product ``g·h`` is
    ``V⁻¹[(V_m g) ⊙ (V_m h)]``; its transpose in ``h`` is the correlation: ``AT = V_mᵀ``,
    ``G = V_m``, ``BT = V⁻ᵀ`` (``V = V_{2m−1}``)."""
    points = [Fraction(p) for p in POINTS[: 2 * m - 2]]

    def vandermonde(columns: int) -> list:
        rows = [[p**j for j in range(columns)] for p in points]
        rows.append([Fraction(int(j == columns - 1)) for j in range(columns)])
        return rows

    evaluate = vandermonde(m)
    inverse = _inverse(vandermonde(2 * m - 1))
    at = tuple(tuple(row[i] for row in evaluate) for i in range(m))
    g = tuple(tuple(row) for row in evaluate)
    bt = tuple(tuple(row[i] for row in inverse) for i in range(2 * m - 1))
    return at, g, bt


def _inverse(matrix: list) -> list:
    """Gauss–Jordan in exact rationals (the matrices are at most 7 × 7)."""
    n = len(matrix)
    work = [list(row) + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if work[r][col] != 0)
        work[col], work[pivot] = work[pivot], work[col]
        scale = work[col][col]
        work[col] = [v / scale for v in work[col]]
        for r in range(n):
            if r != col and work[r][col] != 0:
                factor = work[r][col]
                work[r] = [a - factor * b for a, b in zip(work[r], work[col])]
    return [row[n:] for row in work]


def _tensor(rows: tuple, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor([[float(v) for v in row] for row in rows], dtype=like.dtype, device=like.device)


def winograd_weight(weight: torch.Tensor, m: int = TILE) -> tuple:
    """``(U, AT, BT)``: the ``[O, C, K]`` weight transformed, ``U[j, α] = (G·segment j)ᵀ``
    ``[segments, 2m − 1, C, O]`` (each segment computed in float64, stored in the weight's
    dtype), and the input and output transforms."""
    out_channels, channels, kernel = weight.shape
    segments = -(-kernel // m)
    at, g, bt = transforms(m)
    u = weight.new_empty(segments, 2 * m - 1, channels, out_channels)
    g64 = _tensor(g, weight.new_empty(0, dtype=torch.float64))
    for j in range(segments):
        taps = weight[:, :, j * m : (j + 1) * m].double()
        taps = torch.nn.functional.pad(taps, (0, m - taps.shape[-1]))  # zero taps past the end
        u[j] = torch.einsum("ak,ock->aco", g64, taps)
    return u, _tensor(at, weight), _tensor(bt, weight)


SLICE_ELEMENTS = 1 << 18  # the most products of one slice of tiles (1 MB in float32)


def padded_frames(count: int, dilation: int, transformed: tuple) -> int:
    """The outputs :func:`winograd_conv` computes for ``count``: whole rows of tiles."""
    span = transformed[1].shape[0] * dilation
    return -(-count // span) * span


def winograd_conv(rows: torch.Tensor, transformed: tuple, bias, dilation: int, count: int, out) -> torch.Tensor:
    """``count`` outputs of a stride-1 convolution of ``rows`` ``[n, C]`` (frames outermost,
    contiguous) written into ``out``, a contiguous ``[padded_frames(...), O]`` tensor; returns
    its first ``count`` rows. ``transformed`` from :func:`winograd_weight`; ``bias`` already
    repeated ``dilation`` times (``[dilation·O]``, the order of a row of tiles) or None.

    Tiles go in slices of at most :data:`SLICE_ELEMENTS` products: a 48-frame block of HiFi-GAN
    V1 at 128 channels would otherwise make 3 MB temporaries of every size its layers give,
    which left glibc's heap ~70 MB larger than what was in use; slices of one size reuse it."""
    u, at, bt = transformed
    segments, points, channels, out_channels = u.shape
    m = at.shape[0]
    span = m * dilation  # frames a row of tiles covers: ``dilation`` tiles, interleaved
    tiles = -(-count // span)
    needed = (tiles + segments - 1) * span + (m - 1) * dilation
    if rows.shape[0] < needed:  # the last row of tiles reads past the inputs: zeros, outputs dropped
        rows = torch.nn.functional.pad(rows, (0, 0, 0, needed - rows.shape[0]))
    y = out.view(tiles, m, dilation * out_channels)
    step = max(1, SLICE_ELEMENTS // (points * dilation * max(channels, out_channels)))
    for first in range(0, tiles, step):
        size = min(step, tiles - first)
        read = size + segments - 1
        inputs = rows.as_strided(
            (read, dilation, points, channels),
            (span * channels, channels, dilation * channels, 1),
            rows.storage_offset() + first * span * channels,
        )
        v = torch.einsum("au,bpuc->abpc", bt, inputs)  # [points, read, dilation, C]
        products = torch.bmm(v[:, :size].reshape(points, size * dilation, channels), u[0])
        for j in range(1, segments):
            products.baddbmm_(v[:, j : j + size].reshape(points, size * dilation, channels), u[j])
        products = products.view(points, size, dilation * out_channels).transpose(0, 1)
        if bias is None:
            torch.matmul(at, products, out=y[first : first + size])
        else:
            expanded = bias.expand(size, m, dilation * out_channels)
            torch.baddbmm(expanded, at.expand(size, m, points), products, out=y[first : first + size])
    return out[:count]
