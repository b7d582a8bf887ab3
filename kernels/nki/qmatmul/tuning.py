"""Tunable parameters of the qmatmul kernel, in one place: their defaults per shape class and generation, the rules a
caller's override must follow, and `Tuning`, one call's resolved values.

Each `qmatmul_kernel` keyword named in TUNABLES overrides one value (None = the default for the call's class);
`launch_qmatmul.qmatmul(..., tuning={...})` and `launch_qmatmul.traceable(..., tuning=...)` pass a caller's dict
through `check_overrides`, so a sweep drives them without editing the kernel. DESIGN.md beside this file says how
the defaults were chosen. N_BLOCK and N_SUB are TensorE limits, not tunables.
"""

from .._shim import nl
from .._tiling import MOVING_FMAX, STATIONARY_FMAX

N_BLOCK = MOVING_FMAX  # prefill N tile (moving free size), decode store width: 512 fp32 = one 2 KiB PSUM bank
N_SUB = STATIONARY_FMAX  # decode: output channels per matmul (stationary free size <= 128)
PSUM_BANKS = 8  # PSUM banks per partition (2 KiB each)
X_STEP_COLS = 256  # x columns one K step reads at most (int4: 128 packed rows = 256 k; fp8 pairs: 256 rows)

# name -> (default, what it trades off)
TUNABLES = {
    "decode_max_m": (16, "largest M run with the weight-stationary decode schedule"),
    "decode_dma_cols": (2048, "decode: weight columns per DMA (2 KiB int8 runs per partition); with fewer, longer "
                        "runs the last block's epilogue and store trail the stream (DESIGN.md, \"Tunables\")"),
    "decode_min_dma_cols": (1024, "decode: weight columns per DMA at least, bounding the groups per PSUM chunk"),
    "decode_psum_banks": (4, "decode: PSUM banks of partial sums per DMA block (the rest: transposes, stores)"),
    "decode_lookahead": (2, "decode: weight fetches loaded and converted/unpacked ahead of the one being multiplied"),
    "decode_split_last": (3, "decode: the last weight fetches of the stream, whose int8 / fp8e4m3fn -> bf16 "
                          "conversion is split over VectorE, ScalarE and GpSimd (the tail after the last weight "
                          "lands); earlier fetches convert on one engine each, in rotation"),
    "decode_merge_bytes": (2048, "decode: bytes per partition one DMA of channels-first scales, or one store of y "
                           "(M > 1), carries at least (that many consecutive N blocks' at once): a smaller transfer "
                           "pays each DMA engine's fixed packet time"),
    "decode_shift_max_m": (1, "decode, symmetric int4: largest M whose zero-point term is subtracted from the "
                           "partial sums on VectorE (N·G·M element ops, no scale rows, no transposes); above it a "
                           "TensorE fp32 matmul over the groups"),
    "prefill_sbuf_bytes": (160 * 1024, "prefill: SBUF bytes per partition for the resident x^T of one M block, two "
                           "x pieces and (small K) two N tiles of weights; the rest of 192 KiB holds streamed tiles"),
    "x_chunk": (2048, "prefill: x columns loaded per DMA for the transposes (a multiple of X_STEP_COLS)"),
    "prefill_psum_banks": (4, "prefill: M tiles per block, one [128, 512] fp32 bank each over all of K; "
                           "double-buffered (the next N tile accumulates while this one is stored) they fill 8"),
}
# shape classes whose defaults differ: int4 decode pays no dequant op per weight while its prefill pays one, so
# decode stays ahead up to M ~ 64 (DESIGN.md, "Schedule switch"); int4 decode is bound by VectorE, where more
# group chunks mean more epilogue ops, so its chunks span at least one 512-column block, and its unpack
# instructions cover 4096 columns' worth of K steps (their fixed cost is large next to narrow blocks' work)
CLASS_DEFAULTS = {"int4": dict(decode_max_m=32, decode_min_dma_cols=N_BLOCK, decode_dma_cols=4096, decode_lookahead=4)}
# the generations' defaults agree today (modeled sweeps found no better value on v2 than on v3): no entry
GENERATION_DEFAULTS: dict = {}
LIMITS = {  # name -> (least value, largest value or None, multiple of)
    "decode_max_m": (0, None, 1), "decode_dma_cols": (N_SUB, None, N_SUB), "decode_min_dma_cols": (N_SUB, None, N_SUB),
    "decode_psum_banks": (1, PSUM_BANKS - 2, 1), "decode_lookahead": (0, None, 1), "decode_split_last": (0, None, 1),
    "decode_shift_max_m": (0, None, 1), "decode_merge_bytes": (1, None, 1), "prefill_sbuf_bytes": (1, None, 1),
    "x_chunk": (X_STEP_COLS, None, X_STEP_COLS), "prefill_psum_banks": (1, PSUM_BANKS // 2, 1),
}


def defaults(scheme, v2):
    """{name: default} of every tunable for a call of `scheme` on a NeuronCore-v2 (v2) or a later generation."""
    out = {name: value for name, (value, _) in TUNABLES.items()}
    out.update(CLASS_DEFAULTS.get(scheme, {}))
    out.update(GENERATION_DEFAULTS.get("v2" if v2 else "v3+", {}))
    return out


def check_overrides(tuning):
    """Host side: raise for a caller's `tuning` dict that breaks a rule (TypeError / ValueError naming it).

    Rules: names from TUNABLES; values ints (not bool) within LIMITS (least, largest, multiple of)."""
    if not isinstance(tuning, dict):
        raise TypeError(f"tuning: must be a dict of {{name: int}}, got {type(tuning).__name__}")
    for name, value in tuning.items():
        if name not in TUNABLES:
            raise ValueError(f"tuning: unknown parameter {name!r}; the tunables are {sorted(TUNABLES)}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"tuning[{name!r}]: must be an int, got {type(value).__name__} {value!r}")
        least, largest, step = LIMITS[name]
        if value < least or (largest is not None and value > largest) or value % step:
            rule = f">= {least}" + (f" and <= {largest}" if largest is not None else "") + \
                (f", a multiple of {step}" if step > 1 else "")
            raise ValueError(f"tuning[{name!r}]: must be {rule}, got {value}")


class Tuning(nl.NKIObject):
    """One call's tunables (attributes named as in TUNABLES): `defaults(scheme, v2)` with the kernel keywords that
    are not None on top. overrides: {name: value or None}."""

    def __init__(self, scheme, v2, overrides):
        values = defaults(scheme, v2)
        for name, value in overrides.items():
            if value is not None:
                values[name] = value
        self.decode_max_m, self.decode_dma_cols = values["decode_max_m"], values["decode_dma_cols"]
        self.decode_min_dma_cols, self.decode_psum_banks = values["decode_min_dma_cols"], values["decode_psum_banks"]
        self.decode_lookahead, self.prefill_sbuf_bytes = values["decode_lookahead"], values["prefill_sbuf_bytes"]
        self.decode_split_last, self.decode_shift_max_m = values["decode_split_last"], values["decode_shift_max_m"]
        self.decode_merge_bytes = values["decode_merge_bytes"]
        self.x_chunk, self.prefill_psum_banks = values["x_chunk"], values["prefill_psum_banks"]
