"""Tunable parameters of the NKI paged-KV cache write (`kv_cache.py`), declared once, with their defaults per target
generation.

Every parameter is a compile-time int the kernel takes as a keyword (None = the default below); the launcher
(`launch_kv_cache.write_kv_cache(..., tunables={...})`) and trace mode (`problem["tunables"]`) pass overrides
through. Defaults were chosen on the performance model (modeled, not measured; `tests/kernels/nki/
test_perf_goals_kv_cache.py` pins the rows they give, Llama-3.1-8B's 2 KiB bf16 rows):

    stage_min_t, stage_max_t  v3+ unquantized copies of stage_min_t <= T <= stage_max_t tokens are staged through
                       SBUF (one HBM -> SBUF load per 128-token tile, then an SBUF -> HBM scatter): a transfer with
                       an SBUF side spreads over all 16 DMA engines (8 partitions each), where an HBM -> HBM scatter
                       is cut into 64 KiB pieces, one engine each, so a mid-size write finishes sooner (T = 128:
                       9.3 -> 5.9 us). Outside the range the copy stays HBM -> HBM: a few tokens pay for the extra
                       load in their latency chain, and a long prefill is HBM-bound, where staging doubles the DMA
                       engines' work. v2 (one DMA per token either way): 1 / 0, never staged
    scatter_bytes      v3+ HBM -> HBM scatters: payload bytes per scatter DMA (rows = max(1, scatter_bytes // row
                       bytes)); smaller DMAs land on more DMA engines in parallel at one more GpSimd descriptor
                       instruction (100 cycles) each. 32 KiB: 16 rows of 2 KiB

Kernel-side helper (imports nothing: plain Python on compile-time values).
"""

NAMES = ("stage_min_t", "stage_max_t", "scatter_bytes")

# name -> {generation ("v2" | "v3+") -> value}
_DEFAULTS = {
    "stage_min_t": {"v2": 1, "v3+": 64},
    "stage_max_t": {"v2": 0, "v3+": 128},
    "scatter_bytes": {"v2": 32 * 1024, "v3+": 32 * 1024},
}
_MINIMUM = {"stage_min_t": 1, "stage_max_t": 0, "scatter_bytes": 1}


def defaults(v2):
    """{name: default} for a generation (v2: NeuronCore-v2, else v3+)."""
    gen = "v2" if v2 else "v3+"
    return {name: table[gen] for name, table in _DEFAULTS.items()}


def resolve(v2, overrides):
    """The defaults with the non-None entries of `overrides` ({name: int or None}) in their place; TypeError /
    ValueError naming the parameter for an unknown name or a value that is not an int >= its minimum."""
    values = defaults(v2)
    for name, value in overrides.items():
        if name not in _DEFAULTS:
            raise ValueError(f"tunables: unknown parameter {name!r}; the tunables are {list(NAMES)}")
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name}: must be an int, got {type(value).__name__} {value!r}")
        if value < _MINIMUM[name]:
            raise ValueError(f"{name}: must be an int >= {_MINIMUM[name]}, got {value}")
        values[name] = value
    return values
