"""Tunable parameters of the NKI flash-attention kernel (`attention.py`), declared once, with their defaults per
target generation and shape class.

Every parameter is a compile-time int the kernel takes as a keyword (None = the default below); the launcher
(`launch_attention.attention(..., tunables={...})`) and trace mode (`problem["tunables"]`) pass overrides through.
Defaults were chosen on the performance model (modeled, not measured; see `tests/kernels/nki/
test_perf_goals_attention.py` for the rows they give):

    kv_step            keys per online-softmax step (one row max / exp / rescale each): v3+ 1024 for 2-byte inputs
                       (2 PSUM banks of fp32 scores per head, so score_buffers of them fit beside pᵀ and P·V); v2
                       2048 (its VectorE, not the score tiles' lifetime, sets the pace: fewer, longer steps); half
                       for fp32 (its pᵀ chunks take twice the PSUM)
    q_prefetch         query tiles whose q rows are DMA'd ahead of the one being computed
    pipeline_lag       (key step, head) items between an item's exp and its P·V in program order, so TensorE
                       multiplies new scores while VectorE copies the old pᵀ
    resident_kv_bytes  SBUF bytes per partition one (b, kv head)'s kᵀ and v may take to be loaded once; above it
                       key tiles are loaded per query tile (0 forces streaming)
    head_block_elems   query heads per block · D: the fp32 accumulators [128, heads, D] of a block (<= 16 KiB per
                       partition)
    p_dma_chunks       128-key chunks of each item's pᵀ transposed by an SBUF->SBUF dma_transpose instead of TensorE
                       (+ a VectorE PSUM copy): it splits the transposes between the DMA queues and TensorE/VectorE.
                       Items with fewer chunks (the causal diagonal's) take none: a shorter transfer costs the DMA
                       engines' per-packet floor anyway. v3+ only (dma_transpose arrived with Trainium2) and 2-byte
                       inputs only (v2: 0)
    qk_dma_transpose   1: qᵀ and kᵀ come straight from HBM by dma_transpose (no TensorE transposes, no PSUM copies
                       on ScalarE); 0: q / k rows are loaded and transposed on TensorE. v3+ and 2-byte inputs only
                       (v2: 0; it is also what NeuronCore-v2's non-finite isolation needs: clean rows first)
    scalar_copies      of every 4 groups of pᵀ PSUM->SBUF copies (512 keys each), how many ScalarE makes instead of
                       VectorE: v2 3 (its VectorE is as slow per element as ScalarE and also carries the row maxima);
                       v3+ 0 (ScalarE is busy with the exps, VectorE copies 2-byte tiles in its fast mode)
    score_buffers      PSUM score tiles [128, kv_step] fp32 the kernel rotates through: QKᵀ of an item writes one
                       while the row max and exp of the items before it still read the others. A score tile lives
                       from its QKᵀ through row max and exp (~2.2 us at 1024 keys on trn2, modeled) while an item
                       takes ~1 us, so one buffer serializes the three engines; 3 x 2 banks leave one bank for pᵀ
                       and one for P·V (score_buffers · banks of a score tile must stay <= 6). 0: a new score tile
                       per item, buffered as the compiler sees fit (v2, whose pace the score tiles do not set)

Shape classes: the dtype's size (kv_step). Where the generations' columns hold equal values, no other value was
better on the model for the rows measured (trn2 and inf2, S=4096 / 8192 causal, D=128).

Rows these defaults give at the real shapes (modeled; causal, 32/8 heads, D=128, bf16, MFU of useful FLOPs):
trn2 LNC=1 S=4096 70.4 %, S=8192 75.8 % (TensorE-bound, VectorE and DMA within a few points); inf2 S=4096 37.4 %
(VectorE-bound). The perf-goal test pins these rows, some at smaller head counts.

Kernel-side helper (imports nothing: plain Python on compile-time values).
"""

NAMES = ("kv_step", "q_prefetch", "pipeline_lag", "resident_kv_bytes", "head_block_elems", "p_dma_chunks",
         "qk_dma_transpose", "scalar_copies", "score_buffers")

# name -> {generation ("v2" | "v3+") -> value}; kv_step is given for 2-byte inputs and halved for 4-byte ones
_DEFAULTS = {
    "kv_step": {"v2": 2048, "v3+": 1024},
    "q_prefetch": {"v2": 2, "v3+": 4},
    "pipeline_lag": {"v2": 4, "v3+": 16},
    "resident_kv_bytes": {"v2": 48 * 1024, "v3+": 48 * 1024},
    "head_block_elems": {"v2": 4096, "v3+": 4096},
    "p_dma_chunks": {"v2": 0, "v3+": 5},
    "qk_dma_transpose": {"v2": 0, "v3+": 1},
    "scalar_copies": {"v2": 3, "v3+": 0},
    "score_buffers": {"v2": 0, "v3+": 3},
}
_SCORE_BANKS = 6  # PSUM banks (8 of 2 KiB per partition) the score buffers may take: one is left for pᵀ, one for P·V
_MINIMUM = {"kv_step": 128, "q_prefetch": 1, "pipeline_lag": 1, "resident_kv_bytes": 0, "head_block_elems": 1,
            "p_dma_chunks": 0, "qk_dma_transpose": 0, "scalar_copies": 0, "score_buffers": 0}


def defaults(v2, itemsize):
    """{name: default} for a generation (v2: NeuronCore-v2, else v3+) and the inputs' itemsize in bytes."""
    gen = "v2" if v2 else "v3+"
    values = {name: table[gen] for name, table in _DEFAULTS.items()}
    values["kv_step"] = values["kv_step"] * 2 // itemsize
    return values


def resolve(v2, itemsize, overrides):
    """The defaults with the non-None entries of `overrides` ({name: int or None}) in their place; ValueError
    naming the parameter for a value that is not an int >= its minimum (kv_step: a multiple of 128), or for
    score buffers that do not fit PSUM."""
    values = defaults(v2, itemsize)
    for name in NAMES:
        value = overrides.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < _MINIMUM[name]:
            raise ValueError(f"{name}: must be an int >= {_MINIMUM[name]}, got {value!r}")
        if name == "kv_step" and value % 128:
            raise ValueError(f"{name}: must be a multiple of 128 (whole P·V chunks), got {value}")
        values[name] = value
    banks = -(-values["kv_step"] // 512)  # 2 KiB PSUM banks of one score tile [128, kv_step] fp32
    if values["score_buffers"] * banks > _SCORE_BANKS:
        raise ValueError(f"score_buffers: {values['score_buffers']} score tiles of {banks} PSUM banks each exceed the "
                         f"{_SCORE_BANKS} banks left beside pᵀ and P·V (kv_step {values['kv_step']})")
    return values
