"""Grids: the batch / context / length sweeps a run models at a model's shapes.

  "full"     decode batches 1..256 x contexts 512..32768 x block sizes 16/32/128; prefill 512..8192
  "default"  what `nkilab run` models per target in a few minutes (at most 65536 cached tokens per paged call)
  "quick"    the CI smoke of the CLI
Keys: batches (decode batch = rows of a decode call), contexts (KV tokens per sequence), block_sizes (paged-cache
block), prefill (prefill lengths), prefill_gemm (prefill lengths of the GEMMs, whose traces grow with M x K x N),
max_kv_tokens (optional cap on batch x context).
"""

DECODE_BATCHES = (1, 8, 32, 128, 256)
DECODE_CONTEXTS = (512, 2048, 8192, 32768)
BLOCK_SIZES = (16, 32, 128)
PREFILL_LENGTHS = (512, 2048, 8192)
GRIDS = {
    "full": dict(batches=DECODE_BATCHES, contexts=DECODE_CONTEXTS, block_sizes=BLOCK_SIZES,
                 prefill=PREFILL_LENGTHS, prefill_gemm=PREFILL_LENGTHS),
    # prefill GEMM traces grow with M x K x N: the default grid keeps one length so a run stays in minutes
    "default": dict(batches=(1, 8, 32), contexts=(512, 2048, 8192), block_sizes=(32,), prefill=(512, 2048),
                    prefill_gemm=(512,), max_kv_tokens=65536),
    "quick": dict(batches=(1, 8), contexts=(512,), block_sizes=(32,), prefill=(512,), prefill_gemm=(512,)),
}
