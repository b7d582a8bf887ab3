"""Grids: the batch / context / length sweeps a run models at a model's shapes.

  "full"     decode batches 1..256 x contexts 512..32768 x block sizes 16/32/128; prefill 512..8192
  "default"  what `nkilab run` models per target in a few minutes (at most 65536 cached tokens per paged call)
  "quick"    the CI smoke of the CLI
Keys: batches (decode batch = rows of a decode call), contexts (KV tokens per sequence), block_sizes (paged-cache
block), prefill (prefill lengths), prefill_gemm (prefill lengths of the GEMMs, whose traces grow with M x K x N),
max_kv_tokens (optional cap on batch x context), and the paged-cache steps beyond plain decode: paged_prefill
(prefill lengths through the paged cache), chunks (new tokens of a chunked-prefill chunk), chunk_contexts (KV
length of a chunked sequence, chunk included), mixed_batches (decode sequences sharing a step with one chunk).
`grid_sizes` applies command-line overrides (`--batches`, `--contexts`, `--prefill-lengths`, `--chunks`).
"""

from __future__ import annotations

DECODE_BATCHES = (1, 8, 32, 128, 256)
DECODE_CONTEXTS = (512, 2048, 8192, 32768)
BLOCK_SIZES = (16, 32, 128)
PREFILL_LENGTHS = (512, 2048, 8192)
GRIDS = {
    "full": dict(batches=DECODE_BATCHES, contexts=DECODE_CONTEXTS, block_sizes=BLOCK_SIZES,
                 prefill=PREFILL_LENGTHS, prefill_gemm=PREFILL_LENGTHS, paged_prefill=PREFILL_LENGTHS,
                 chunks=(512, 2048), chunk_contexts=(2048, 8192, 32768), mixed_batches=(1, 8, 32)),
    # prefill GEMM traces grow with M x K x N, paged prefill / chunk traces with chunk x context: the default grid
    # keeps one length of each so a run stays in minutes
    "default": dict(batches=(1, 8, 32), contexts=(512, 2048, 8192), block_sizes=(32,), prefill=(512, 2048),
                    prefill_gemm=(512,), max_kv_tokens=65536, paged_prefill=(512,), chunks=(256,),
                    chunk_contexts=(2048,), mixed_batches=(8,)),
    "quick": dict(batches=(1, 8), contexts=(512,), block_sizes=(32,), prefill=(512,), prefill_gemm=(512,),
                  paged_prefill=(512,), chunks=(256,), chunk_contexts=(1024,), mixed_batches=(8,)),
}
# command-line override -> the grid keys it sets (one list of sizes sets every sweep of that kind)
OVERRIDES = {
    "batches": ("batches", "mixed_batches"),
    "contexts": ("contexts", "chunk_contexts"),
    "prefill_lengths": ("prefill", "prefill_gemm", "paged_prefill"),
    "chunks": ("chunks",),
}


def grid_sizes(grid: str | dict = "default", **overrides) -> dict:
    """The sizes of a named grid (or a dict of sizes, as is), with `overrides` (keys of OVERRIDES: a tuple of
    positive ints, or None = the grid's) replacing the keys they name; a custom batch or context list also lifts
    the grid's max_kv_tokens cap (the user asked for those sizes).

    Raises:
        ValueError: an unknown grid name or override key, or a size that is not a positive int.
    """
    if isinstance(grid, dict):
        sizes = dict(grid)
    elif grid in GRIDS:
        sizes = dict(GRIDS[grid])
    else:
        raise ValueError(f"grid: must be one of {tuple(GRIDS)}, got {grid!r}")
    for key, values in overrides.items():
        if key not in OVERRIDES:
            raise ValueError(f"{key}: not a grid override; use one of {', '.join(OVERRIDES)}")
        if values is None:
            continue
        values = tuple(values)
        if not values or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in values):
            raise ValueError(f"{key}: must be a non-empty list of positive ints, got {values!r}")
        for target in OVERRIDES[key]:
            sizes[target] = values
        if key in ("batches", "contexts"):
            sizes.pop("max_kv_tokens", None)
    return sizes
