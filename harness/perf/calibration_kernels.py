"""The calibration kernels: nkilab's own, written in the loop structure of the published ones (which loads sit in
which loop, which buffers rotate, which buffer accumulates), never copied from them. `calibration.py` lists the
published figure each one stands against.

  [KO]  the kernel-optimization tutorial's fp32 matmuls (tiled, hoisted, free-blocked, all-blocked);
  [AT]  nki-autotune's port of the all-blocked matmul (bf16, 2048^3, two blockings; one PSUM tile per M block), and
        its hand-tuned 2048^3 bf16 kernels:
        lhsT @ rhs streamed through explicit rotating buffers, and lhs @ rhs with a DMA transpose of lhs;
  [PROF] the profiling guide's one-tile exp kernel.

One departure in the [KO] free-blocked kernel: it streams its block's operand tiles per k step instead of loading
whole K columns first, because whole fp32 columns of a 2 x 2 block (320 KiB per partition) do not fit SBUF; it
moves the same bytes in the same transfer shapes. The [AT] hand kernels allocate only the rotating buffer sets their
loops index (the published ones declare more, which the compiler never allocates: they are never accessed).
"""

from __future__ import annotations

from nkilab.harness.emulator import nisa, nl

TILE_K = 128  # partition dim: contraction rows per matmul
TILE_M = 128  # stationary free size
TILE_N = 512  # moving free size: one 2 KiB PSUM bank of fp32


def matmul_tiled(lhs_t, rhs):
    """result[M, N] = lhs_t[K, M].T @ rhs[K, N]; both operand tiles loaded right before each matmul."""
    k_dim, m_dim = lhs_t.shape
    n_dim = rhs.shape[1]
    result = nl.ndarray((m_dim, n_dim), dtype=nl.float32, buffer=nl.shared_hbm)
    for m in range(m_dim // TILE_M):
        for n in range(n_dim // TILE_N):
            acc_psum = nl.ndarray((TILE_M, TILE_N), dtype=nl.float32, buffer=nl.psum)
            for k in range(k_dim // TILE_K):
                a_sb = nl.ndarray((TILE_K, TILE_M), dtype=lhs_t.dtype, buffer=nl.sbuf)
                b_sb = nl.ndarray((TILE_K, TILE_N), dtype=rhs.dtype, buffer=nl.sbuf)
                nisa.dma_copy(dst=a_sb, src=lhs_t[k * TILE_K:(k + 1) * TILE_K, m * TILE_M:(m + 1) * TILE_M])
                nisa.dma_copy(dst=b_sb, src=rhs[k * TILE_K:(k + 1) * TILE_K, n * TILE_N:(n + 1) * TILE_N])
                nisa.nc_matmul(dst=acc_psum, stationary=a_sb, moving=b_sb, accumulate=k > 0)
            _store_tile(result, acc_psum, m * TILE_M, n * TILE_N)
    return result


def matmul_hoisted(lhs_t, rhs):
    """Same product; a column of lhs_t tiles loaded once per m, a column of rhs tiles once per (m, n)."""
    k_dim, m_dim = lhs_t.shape
    n_dim = rhs.shape[1]
    kt = k_dim // TILE_K
    result = nl.ndarray((m_dim, n_dim), dtype=nl.float32, buffer=nl.shared_hbm)
    for m in range(m_dim // TILE_M):
        a_tiles = [_load(lhs_t, k * TILE_K, m * TILE_M, TILE_M) for k in range(kt)]
        for n in range(n_dim // TILE_N):
            b_tiles = [_load(rhs, k * TILE_K, n * TILE_N, TILE_N) for k in range(kt)]
            acc_psum = nl.ndarray((TILE_M, TILE_N), dtype=nl.float32, buffer=nl.psum)
            for k in range(kt):
                nisa.nc_matmul(dst=acc_psum, stationary=a_tiles[k], moving=b_tiles[k], accumulate=k > 0)
            _store_tile(result, acc_psum, m * TILE_M, n * TILE_N)
            del b_tiles  # free this column's SBUF before the next one is loaded (SBUF holds one at a time)
    return result


def matmul_free_blocked(lhs_t, rhs, *, tiles_m: int = 2, tiles_n: int = 2):
    """Same product; each block of tiles_m x tiles_n output tiles loads its operand tiles once per k and
    shares them (tiles_m + tiles_n loads feed tiles_m x tiles_n matmuls), accumulating in tiles_m x tiles_n
    PSUM banks. Loads stream per k rather than whole columns up front, so SBUF holds one k step of the block
    (whole fp32 columns of a 2 x 2 block at K=8192 would need 320 KiB per partition)."""
    k_dim, m_dim = lhs_t.shape
    n_dim = rhs.shape[1]
    result = nl.ndarray((m_dim, n_dim), dtype=nl.float32, buffer=nl.shared_hbm)
    for mb in range(m_dim // (TILE_M * tiles_m)):
        for nb in range(n_dim // (TILE_N * tiles_n)):
            acc = [[nl.ndarray((TILE_M, TILE_N), dtype=nl.float32, buffer=nl.psum) for _ in range(tiles_n)]
                   for _ in range(tiles_m)]
            for k in range(k_dim // TILE_K):
                a_tiles = [_load(lhs_t, k * TILE_K, (mb * tiles_m + i) * TILE_M, TILE_M) for i in range(tiles_m)]
                b_tiles = [_load(rhs, k * TILE_K, (nb * tiles_n + j) * TILE_N, TILE_N) for j in range(tiles_n)]
                for i in range(tiles_m):
                    for j in range(tiles_n):
                        nisa.nc_matmul(dst=acc[i][j], stationary=a_tiles[i], moving=b_tiles[j], accumulate=k > 0)
            for i in range(tiles_m):
                for j in range(tiles_n):
                    _store_tile(result, acc[i][j], (mb * tiles_m + i) * TILE_M, (nb * tiles_n + j) * TILE_N)
    return result


def matmul_all_blocked(lhs_t, rhs, *, tiles_m: int = 16, tiles_n: int = 2, tiles_k: int = 8,
                       shared_partials: bool = False):
    """Same product (result and accumulators in lhs_t's dtype), blocked in M, N and K: per N block, partial sums
    live in SBUF across K blocks.

    Loop order: N blocks { zero the SBUF accumulators; K blocks { load tiles_k rhs rows [128, block_n];
    M blocks { load tiles_k lhs_t rows [128, block_m]; per (n tile, m tile): tiles_k matmuls into PSUM, then
    add the PSUM tile into its SBUF accumulator } } ; store each accumulator row [128, block_n] }.

    shared_partials=False is the [KO] tutorial's kernel: a PSUM tile allocated per output tile, added from PSUM
    straight into the accumulator. shared_partials=True is nki-autotune's port of it (kernel_manual_79.05mfu.py):
    one PSUM tile and one SBUF staging tile allocated per M block and shared by all of the block's output tiles,
    each tile memset in PSUM, copied to the staging tile, then added; so consecutive output tiles of a block
    wait for each other (write-after-read on the shared tiles), and only different M blocks can overlap.
    """
    k_dim, m_dim = lhs_t.shape
    n_dim = rhs.shape[1]
    block_m, block_n, block_k = TILE_M * tiles_m, TILE_N * tiles_n, TILE_K * tiles_k
    result = nl.ndarray((m_dim, n_dim), dtype=lhs_t.dtype, buffer=nl.shared_hbm)
    for nb in range(n_dim // block_n):
        acc = [[[nl.ndarray((TILE_M, TILE_N), dtype=lhs_t.dtype, buffer=nl.sbuf) for _ in range(tiles_n)]
                for _ in range(tiles_m)] for _ in range(m_dim // block_m)]
        for rows in acc:
            for row in rows:
                for tile in row:
                    nisa.memset(dst=tile, value=0.0)
        for kb in range(k_dim // block_k):
            b_rows = [_load(rhs, (kb * tiles_k + r) * TILE_K, nb * block_n, block_n) for r in range(tiles_k)]
            for mb in range(m_dim // block_m):
                a_rows = [_load(lhs_t, (kb * tiles_k + r) * TILE_K, mb * block_m, block_m) for r in range(tiles_k)]
                shared = _partial_tiles(lhs_t.dtype) if shared_partials else None
                for j in range(tiles_n):
                    for i in range(tiles_m):
                        stationary = [a[:, i * TILE_M:(i + 1) * TILE_M] for a in a_rows]
                        moving = [b[:, j * TILE_N:(j + 1) * TILE_N] for b in b_rows]
                        if shared is None:
                            part_psum = nl.ndarray((TILE_M, TILE_N), dtype=nl.float32, buffer=nl.psum)
                            for r, (s, m) in enumerate(zip(stationary, moving)):
                                nisa.nc_matmul(dst=part_psum, stationary=s, moving=m, accumulate=r > 0)
                            nisa.tensor_tensor(dst=acc[mb][i][j], data1=acc[mb][i][j], data2=part_psum, op=nl.add)
                        else:
                            _accumulate(acc[mb][i][j], stationary, moving, shared)
                del a_rows  # fp32 16/2/8 fills SBUF exactly: free before the next M block's rows load
            del b_rows
        _store_accumulators(result, acc, nb * block_n, block_n)
        del acc  # the next N block's accumulators reuse this SBUF
    return result


def _partial_tiles(dtype, shape: tuple = (TILE_M, TILE_N)) -> tuple:
    """One fp32 PSUM tile and one SBUF staging tile in `dtype`, both of `shape`."""
    return (nl.ndarray(shape, dtype=nl.float32, buffer=nl.psum), nl.ndarray(shape, dtype=dtype, buffer=nl.sbuf))


def _store_accumulators(result, acc, n0: int, block_n: int) -> None:
    """Each accumulator row acc[mb][i] (tiles of [TILE_M, TILE_N]) packed into one [TILE_M, block_n] SBUF tile
    and stored with one DMA to result[m0:m0+TILE_M, n0:n0+block_n]."""
    for mb, rows in enumerate(acc):
        for i, row in enumerate(rows):
            row_sb = nl.ndarray((TILE_M, block_n), dtype=result.dtype, buffer=nl.sbuf)
            for j, tile in enumerate(row):
                nisa.tensor_copy(dst=row_sb[:, j * TILE_N:(j + 1) * TILE_N], src=tile)
            m0 = (mb * len(rows) + i) * TILE_M
            nisa.dma_copy(dst=result[m0:m0 + TILE_M, n0:n0 + block_n], src=row_sb)


def _load(hbm, row: int, col: int, width: int):
    """One [TILE_K, width] SBUF tile of hbm[row:row+TILE_K, col:col+width]."""
    tile = nl.ndarray((TILE_K, width), dtype=hbm.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=tile, src=hbm[row:row + TILE_K, col:col + width])
    return tile


def _store_tile(result, acc_psum, m0: int, n0: int) -> None:
    """PSUM -> SBUF -> result[m0:m0+TILE_M, n0:n0+TILE_N] (DMA cannot read PSUM)."""
    out_sb = nl.ndarray((TILE_M, TILE_N), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=out_sb, src=acc_psum)
    nisa.dma_copy(dst=result[m0:m0 + TILE_M, n0:n0 + TILE_N], src=out_sb)


def matmul_lhst_rhs_streamed(lhs_t, rhs, *, k_half: int = 1024, block_m: int = 512, block_n: int = 512):
    """result[M, N] (bf16) = lhs_t[K, M].T @ rhs[K, N], in the structure of nki-autotune's hand-tuned lhsT.rhs.

    N blocks of `block_n` outermost; per N block, K halves of `k_half`, and M blocks of `block_m` inside them. The
    rhs half is loaded as [128, block_n] tiles into one of 2 rotating sets (by K half), each lhs_t block as
    [128, block_m] tiles into one of 2 x 4 (K half, M block); the lhs_t/rhs sets are allocated per N block. Each
    [128, block_n] output tile accumulates its K half in a PSUM tile declared inside the loop (memset, one matmul
    per 128 rows), copied to a loop-local bf16 SBUF tile and added into its SBUF accumulator (4 rotating sets, one
    per N block, allocated once); the N block's output tiles are stored when its K loop ends.
    """
    k_dim, m_dim = lhs_t.shape
    n_dim = rhs.shape[1]
    kt, mt = k_half // TILE_K, block_m // TILE_M
    result = nl.ndarray((m_dim, n_dim), dtype=nl.bfloat16, buffer=nl.shared_hbm)
    out_sets = [[nl.ndarray((TILE_M, block_n), dtype=nl.bfloat16, buffer=nl.sbuf) for _ in range(m_dim // TILE_M)]
                for _ in range(4)]
    for j in range(n_dim // block_n):
        lhs_sets = [[_tiles(kt, block_m, lhs_t.dtype) for _ in range(4)] for _ in range(2)]
        rhs_sets = [_tiles(kt, block_n, rhs.dtype) for _ in range(2)]
        out = out_sets[j % 4]
        for tile in out:
            nisa.memset(dst=tile, value=0.0)
        for h in range(k_dim // k_half):
            rhs_tiles = rhs_sets[h % 2]
            for r, tile in enumerate(rhs_tiles):
                nisa.dma_copy(dst=tile, src=rhs[h * k_half + r * TILE_K:h * k_half + (r + 1) * TILE_K,
                                                j * block_n:(j + 1) * block_n])
            for b in range(m_dim // block_m):
                lhs_tiles = lhs_sets[h % 2][b % 4]
                for r, tile in enumerate(lhs_tiles):
                    nisa.dma_copy(dst=tile, src=lhs_t[h * k_half + r * TILE_K:h * k_half + (r + 1) * TILE_K,
                                                      b * block_m:(b + 1) * block_m])
                for i in range(mt):
                    _accumulate(out[b * mt + i], [t[:, i * TILE_M:(i + 1) * TILE_M] for t in lhs_tiles], rhs_tiles)
        for t, tile in enumerate(out):
            nisa.dma_copy(dst=result[t * TILE_M:(t + 1) * TILE_M, j * block_n:(j + 1) * block_n], src=tile)
    return result


def matmul_lhs_rhs_transposed(lhs, rhs, *, half: int = 1024, block_n: int = 512):
    """result[M, N] (bf16) = lhs[M, K] @ rhs[K, N], in the structure of nki-autotune's hand-tuned lhs.rhs with a
    DMA transpose.

    M halves of `half` outermost, N blocks of `block_n`, K halves of `half` innermost. Per (M half, N block,
    K half), lhs[M half, K half] is transposed on the way in by dma_transpose of [half, 128] -> [128, half] tiles
    into one of 2 x 2 rotating sets (allocated once), and rhs[K half, N block] is loaded as [128, block_n] tiles
    into one of 2 sets allocated per N block. Each [128, block_n] output tile accumulates its K half in a
    loop-local PSUM tile (memset, one matmul per 128 rows), copied to a loop-local bf16 SBUF tile and added into
    the M half's SBUF accumulator rows [128, N] (allocated per M half); the N block's columns are stored when its
    K loop ends.
    """
    m_dim, k_dim = lhs.shape
    n_dim = rhs.shape[1]
    kt, mt = half // TILE_K, half // TILE_M
    result = nl.ndarray((m_dim, n_dim), dtype=nl.bfloat16, buffer=nl.shared_hbm)
    lhs_t_sets = [[_tiles(kt, half, lhs.dtype) for _ in range(2)] for _ in range(2)]
    for a in range(m_dim // half):
        out = [nl.ndarray((TILE_M, n_dim), dtype=nl.bfloat16, buffer=nl.sbuf) for _ in range(mt)]
        for row in out:
            nisa.memset(dst=row, value=0.0)
        for j in range(n_dim // block_n):
            rhs_sets = [_tiles(kt, block_n, rhs.dtype) for _ in range(2)]
            cols = slice(j * block_n, (j + 1) * block_n)
            for h in range(k_dim // half):
                lhs_tiles = lhs_t_sets[h % 2][a % 2]
                for r, tile in enumerate(lhs_tiles):
                    nisa.dma_transpose(dst=tile, src=lhs[a * half:(a + 1) * half,
                                                         h * half + r * TILE_K:h * half + (r + 1) * TILE_K])
                rhs_tiles = rhs_sets[h % 2]
                for r, tile in enumerate(rhs_tiles):
                    nisa.dma_copy(dst=tile, src=rhs[h * half + r * TILE_K:h * half + (r + 1) * TILE_K, cols])
                for i in range(mt):
                    _accumulate(out[i][:, cols], [t[:, i * TILE_M:(i + 1) * TILE_M] for t in lhs_tiles], rhs_tiles)
            for i, row in enumerate(out):
                nisa.dma_copy(dst=result[a * half + i * TILE_M:a * half + (i + 1) * TILE_M, cols], src=row[:, cols])
    return result


def exp_one_tile(x):
    """out = exp(x) for one [128, F] tile, the profiling guide's kernel: one load, one activation, one store; both
    DMAs through the software DGE, as the guide's profile shows them (queue qGpSimdDynamic)."""
    out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
    tile = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.sbuf)
    res = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=tile, src=x, dge_mode=nisa.dge_mode.swdge)
    nisa.activation(dst=res, op=nl.exp, data=tile)
    nisa.dma_copy(dst=out, src=res, dge_mode=nisa.dge_mode.swdge)
    return out


def _tiles(count: int, width: int, dtype) -> list:
    """`count` SBUF tiles [TILE_K, width]."""
    return [nl.ndarray((TILE_K, width), dtype=dtype, buffer=nl.sbuf) for _ in range(count)]


def _accumulate(acc, stationary: list, moving: list, partials: tuple | None = None) -> None:
    """acc (SBUF) += sum_r stationary[r].T @ moving[r]: memset a PSUM tile, accumulate the matmuls in it, copy it to
    an SBUF staging tile in acc's dtype, add that into acc. `partials` = (PSUM tile, staging tile) the caller
    shares across calls; None allocates both here (loop-local)."""
    part_psum, part = partials or _partial_tiles(acc.dtype, (stationary[0].shape[1], moving[0].shape[1]))
    nisa.memset(dst=part_psum, value=0.0)
    for s, m in zip(stationary, moving):
        nisa.nc_matmul(dst=part_psum, stationary=s, moving=m, accumulate=True)
    nisa.tensor_copy(dst=part, src=part_psum)
    nisa.tensor_tensor(dst=acc, data1=acc, data2=part, op=nl.add)
