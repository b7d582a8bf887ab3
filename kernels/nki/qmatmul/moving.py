"""Decode's moving operands: x^T per K step (int4: per nibble half), block-diagonal over the step's groups, and the
int4 group sums of x they give.

A slot is one (K step, half) pair: partition rows r of the step, x column cols[0] + r·cols[2] (`Geometry.halves`).
Its moving operand is [rows, ng, M] bf16: x^T copied into the step's ng group column blocks, block j keeping only
the rows of group j (a multiply by the group mask), so one matmul leaves each group's partial sum in its own PSUM
slot. x^T comes three ways:
  - NeuronCore-v3+, bf16 x (`dma_x`): straight from HBM by one dma_transpose over every full K step, spread over
    the 16 DMA engines (the x rows themselves, M partitions, load on M/8 engines: for Llama-3.1-8B down, K =
    14336, 10 µs on two engines that every early weight fetch also needed);
  - else TensorE transposes of the x rows, in runs of slots sharing one PSUM tile (one bank) and one VectorE op;
  - NeuronCore-v2, M > 1: bit-exact byte transposes (`transpose.py`), so that a NaN in one token stays in its row.
"""

from .._shim import nisa, nl
from .._tiling import PMAX, PSUM_FMAX
from .transpose import byte_values, transpose_bytes


def dma_x(x, geo):
    """Whether x^T comes from HBM by dma_transpose: NeuronCore-v3+ (DMA transposes arrived with Trainium2), x bf16
    (a transpose moves the bytes as they are; the kernel multiplies bf16 x)."""
    return not geo.byte_transposes and not geo.w8a8 and x.dtype == nl.bfloat16


def moving_operands(x, geo):
    """(moving, x_sb, xT): moving[i][h] [rows, ng, M] bf16 SBUF per K step i and half h; x_sb, the x rows [M, K]
    bf16 SBUF the transposes read (None with `dma_x`); xT, the plain x^T [128, steps, halves, M] bf16 SBUF (with
    `dma_x`, else None). x: [M, K] HBM."""
    m = geo.m
    mask = _group_mask(geo.gr, geo.ngmax, 0) if geo.ngmax > 1 else None
    slots = [(i, h, cols, rows) for i in range(len(geo.steps)) for h, (cols, rows) in enumerate(geo.halves(i))]
    moving = [[None] * len(geo.halves(i)) for i in range(len(geo.steps))]
    if dma_x(x, geo):
        xT = _dma_transposed(x, geo)
        flat = xT.flatten_dims(1, 2)  # [128, slots, M]: slot nhalves·i + h
        for run in _slot_runs(slots, geo, len(slots)):
            s0, rows, ng = slots.index(run[0]), run[0][3], geo.steps[run[0][0]].ng
            src = flat[0:rows, s0:s0 + len(run), :].expand_dim(2)
            xm = _masked(src, mask, ng, len(run)) if ng > 1 else src
            for r, (i, h, _, _) in enumerate(run):
                moving[i][h] = xm[:, r]
        return moving, None, xT
    x_sb = nl.ndarray((m, x.shape[1]), dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.dma_copy(dst=x_sb, src=x)
    # a one-row transpose mixes no rows: only M > 1 needs the byte path on NeuronCore-v2
    if geo.byte_transposes and m > 1:
        planes = byte_values(x_sb, 2)
        for i, h, cols, rows in slots:
            xT = transpose_bytes(planes, m, cols, 2, nl.bfloat16).expand_dim(1)  # SBUF [rows, 1, M]
            ng = geo.steps[i].ng
            moving[i][h] = _masked(xT.expand_dim(1), mask, ng, 1)[:, 0] if ng > 1 else xT
        return moving, x_sb, None
    for run in _slot_runs(slots, geo, 2 * PSUM_FMAX // m):
        rows, ng = run[0][3], geo.steps[run[0][0]].ng
        xT = nl.ndarray((rows, len(run), m), dtype=nl.bfloat16, buffer=nl.psum)
        for r, (_, _, cols, _) in enumerate(run):
            nisa.nc_transpose(dst=xT[:, r, :], data=x_sb[0:m, cols[0]:cols[1]:cols[2]])
        if ng > 1:
            xm = _masked(xT.expand_dim(2), mask, ng, len(run))
        else:
            xm = nl.ndarray((rows, len(run), 1, m), dtype=nl.bfloat16, buffer=nl.sbuf)
            nisa.tensor_copy(dst=xm, src=xT.expand_dim(2))
        for r, (i, h, _, _) in enumerate(run):
            moving[i][h] = xm[:, r]
    return moving, x_sb, None


def group_sums_mm(xT, geo, chunk):
    """int4 zero-point folding with `dma_x`: X^T[g, m] = Σ_{k in group chunk.g0 + g} bf16(x[m, k]), float32 SBUF
    [ng, M], on TensorE: per slot of the chunk's steps, a 0/1 selector [rows, ng] (row p -> the step's group of
    p) against the slot's plain x^T, accumulated in one PSUM tile, then one ScalarE copy. Nothing is transposed;
    a non-finite x[m, k] reaches column m only (0 · NaN stays in that token's column)."""
    ng = chunk.ng
    sel = _group_mask(geo.gr, 2 * ng, ng)  # sel[p, c] = 1 where c == ng + p // gr: a window per group offset
    ps = nl.ndarray((ng, geo.m), dtype=nl.float32, buffer=nl.psum)
    for i in chunk.steps:
        step = geo.steps[i]
        d = step.g0 - chunk.g0
        for h in range(geo.nhalves):
            nisa.nc_matmul(dst=ps, stationary=sel[0:step.rows, ng - d:2 * ng - d, 0], moving=xT[0:step.rows, i, h, :])
    sums_T = nl.ndarray((ng, geo.m), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=sums_T, op=nl.copy, data=ps)
    return sums_T


def _dma_transposed(x, geo):
    """x^T [128, steps, halves, M] bf16 SBUF, [r, i, h, m] = x[m, 2 (r0 + r) + h] (int4: rows r of step i, half h)
    or x[m, r0 + r]: one dma_transpose from HBM for every full K step, one more for a ragged last one."""
    m, k = geo.m, x.shape[1]
    xT = nl.ndarray((PMAX, len(geo.steps), geo.nhalves, m), dtype=nl.bfloat16, buffer=nl.sbuf)
    full = [i for i, step in enumerate(geo.steps) if step.rows == PMAX]
    parts = [(full, PMAX)] if full else []
    if len(full) < len(geo.steps):
        parts.append(([len(geo.steps) - 1], geo.steps[-1].rows))
    for steps, rows in parts:
        i0, n = steps[0], len(steps)
        r0 = geo.steps[i0].r0
        if geo.int4:  # column 2 (r0 + r) + h of step i: [M, steps, halves, rows] -> [rows, steps, halves, M]
            src = x.ap([[k, m], [2 * PMAX, n], [1, 2], [2, rows]], offset=2 * r0)
            nisa.dma_transpose(dst=xT[0:rows, i0:i0 + n, :, :], src=src, axes=(3, 1, 2, 0))
        else:
            src = x.ap([[k, m], [PMAX, n], [1, rows]], offset=r0)
            nisa.dma_transpose(dst=xT[0:rows, i0:i0 + n, 0, :], src=src, axes=(2, 1, 0))
    return xT


def _masked(xT, mask, ng, runs):
    """xm [rows, runs, ng, M] bf16 SBUF = xT [rows, runs, 1, M] times the group mask: block-diagonal copies."""
    rows, m = xT.shape[0], xT.shape[-1]
    xm = nl.ndarray((rows, runs, ng, m), dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=xm, data1=xT.broadcast(2, ng),
                       data2=mask[0:rows, 0:ng, :].expand_dim(1).broadcast(1, runs).broadcast(3, m), op=nl.multiply)
    return xm


def _slot_runs(slots, geo, most):
    """slots (step, half, cols, rows) cut into runs of consecutive ones with equal rows and groups, at most `most`
    each."""
    runs = []
    for slot in slots:
        last = runs[-1][-1] if runs else None
        if last and len(runs[-1]) < most and last[3] == slot[3] and geo.steps[last[0]].ng == geo.steps[slot[0]].ng:
            runs[-1].append(slot)
        else:
            runs.append([slot])
    return runs


def _group_mask(gr, cols, shift):
    """mask[p, c, 0] = 1.0 where partition row p belongs to group c - shift (p // gr == c - shift), else 0: bf16
    SBUF [128, cols, 1] (shift 0: a K step's group mask, columns its groups)."""
    ones = nl.ndarray((PMAX, cols, 1), dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.memset(dst=ones, value=1.0)
    lower = nl.ndarray((PMAX, cols, 1), dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.affine_select(dst=lower, pattern=[[-gr, cols], [1, 1]], channel_multiplier=1, on_true_tile=ones,
                       on_false_value=0.0, cmp_op=nl.greater_equal, offset=gr * shift)
    mask = nl.ndarray((PMAX, cols, 1), dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.affine_select(dst=mask, pattern=[[gr, cols], [1, 1]], channel_multiplier=-1, on_true_tile=lower,
                       on_false_value=0.0, cmp_op=nl.greater_equal, offset=gr - 1 - gr * shift)
    return mask
