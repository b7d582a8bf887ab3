"""Tile-info objects of one qmatmul call: its HBM operands, K steps with the groups each covers, group chunks.

Kernel-side: plain Python over compile-time shapes (valid under the NKI 0.7 frontend and the emulator).
"""

from .._shim import nl
from .._tiling import PMAX, tiles


class Operands(nl.NKIObject):
    """The HBM tensors of one call and this program's share of the N blocks.

    x: [M, K] activations; w: quantized weights; scales, scales_t (the same, channels first), zeros (int4
    asymmetric, else None), x_scales (W8A8, else None): as in `qmatmul_kernel`; out: [M, N] result; pid, nprog:
    this LNC program instance and their count (each takes every nprog-th N block, identical control flow on both
    cores).
    """

    def __init__(self, x, w, scales, scales_t, zeros, x_scales, out, pid, nprog):
        self.x, self.w, self.scales, self.zeros, self.x_scales, self.out = x, w, scales, zeros, x_scales, out
        self.scales_t = scales_t
        self.pid, self.nprog = pid, nprog


class KStep(nl.NKIObject):
    """One K step: partition rows r0 .. r0+rows of w in HBM (<= 128, or 256 with fp8 pairs), covering groups
    g0 .. g0+ng-1 (per channel: group 0, ng 1)."""

    def __init__(self, r0, rows, g0, ng):
        self.r0, self.rows, self.g0, self.ng = r0, rows, g0, ng


class GroupChunk(nl.NKIObject):
    """Consecutive K steps (indices `steps`) covering groups g0 .. g0+ng-1, whose per-group partial sums share one
    set of PSUM banks in decode."""

    def __init__(self, g0, ng, steps):
        self.g0, self.ng, self.steps = g0, ng, steps


class Geometry(nl.NKIObject):
    """Compile-time tiling facts of one call: K steps with the groups each covers, and flags of the scheme.

    rows: partition rows of w in HBM (K, or K/2 for int4); gr: rows per group (all rows per channel);
    parity: 2 for int4 (even/odd k packed in one row), else 1; pairs: K steps of 256 rows for fp8 double-row
    matmuls (W8A8 prefill on NeuronCore-v3+); steps: a KStep per <= 128 rows (256 with pairs); ngmax: most
    groups in a step; nhalves: x^T slots per step (int4: even/odd k; pairs: rows r0.. and r0+128..; else 1);
    narrow_out: y is 16-bit (decode rounds y^T before transposing it); fp8_nibbles: int4 decode multiplies
    the nibbles as fp8 views (u · 2^-9), else as bf16 copies; byte_transposes: transposes that would mix rows of
    x or columns of y go through `transpose.transpose_bytes` (NeuronCore-v2, whose TensorE transpose spreads
    NaN/inf across the tile); tuning: the call's `tuning.Tuning`.
    """

    def __init__(self, scheme, group_size, symmetric, k, m, w8a8, pairs=False, out_dtype="float32",
                 fp8_nibbles=False, byte_transposes=False, tuning=None):
        self.byte_transposes, self.tuning = byte_transposes, tuning
        self.scheme, self.symmetric, self.w8a8, self.m, self.pairs = scheme, symmetric, w8a8, m, pairs
        self.narrow_out = out_dtype != "float32"
        self.int4 = scheme == "int4"
        self.fp8_nibbles = self.int4 and fp8_nibbles
        self.per_channel = group_size is None
        self.parity = 2 if self.int4 else 1
        self.nhalves = 2 if (self.int4 or pairs) else 1
        self.rows = k // self.parity
        self.gr = self.rows if self.per_channel else group_size // self.parity
        self.ngroups = 1 if self.per_channel else self.rows // self.gr
        self.steps = []
        for r0, rows in tiles(self.rows, 2 * PMAX if pairs else PMAX):
            if self.per_channel:
                self.steps.append(KStep(r0, rows, 0, 1))
            else:
                self.steps.append(KStep(r0, rows, r0 // self.gr, max(1, rows // self.gr)))
        self.ngmax = max(step.ng for step in self.steps)

    def halves(self, i):
        """[(x column start, stop, step), partition rows] of each x^T slot of K step i."""
        r0, rows = self.steps[i].r0, self.steps[i].rows
        if self.int4:
            return [((2 * r0 + h, 2 * (r0 + rows), 2), rows) for h in range(2)]
        if self.pairs:
            return [((r0 + PMAX * h, r0 + PMAX * h + min(PMAX, rows - PMAX * h), 1), min(PMAX, rows - PMAX * h))
                    for h in range(2) if rows > PMAX * h]
        return [((r0, r0 + rows, 1), rows)]

    def chunks(self, max_groups):
        """Consecutive steps grouped so that each chunk covers at most `max_groups` groups: a list of GroupChunk."""
        out = []
        for i, step in enumerate(self.steps):
            if out and step.g0 + step.ng - out[-1].g0 <= max_groups:
                out[-1].ng = step.g0 + step.ng - out[-1].g0
                out[-1].steps.append(i)
            else:
                out.append(GroupChunk(step.g0, step.ng, [i]))
        return out
