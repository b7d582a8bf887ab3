"""Paged KV-cache write: scatter new tokens' keys and values into their cache slots, in place.

    key_cache[slot // block_size, slot % block_size] = key[t]   for every t with slot = slot_mapping[t] != -1

Algorithm: the cache is viewed as rows `[num_blocks * block_size, Hkv * D]` (one row per slot, the vLLM
"flash" layout makes a slot's heads contiguous), the new tokens as rows `[T, Hkv * D]`. Per tile of up to
PMAX tokens the slots are loaded into an SBUF (P, 1) int32 index tile, then
- NeuronCore-v3+ (trn2): ONE indirect DMA per cache scatters the P token rows to rows `slots[p]`
  (`.ap(vector_offset=slots, indirect_dim=0)`); HBM -> HBM, no SBUF staging of the payload;
- NeuronCore-v2 (inf2, trn1; the docs allow only scalar dynamic offsets there): one DMA per token and
  cache whose destination row is the 1x1 `scalar_offset` slots[t].

Padding: slot -1 names row -1, outside the cache in both int32 and uint32 readings, and every DMA runs with
`oob_mode.skip`, which drops exactly the transfers (rows) whose dynamic index is out of bounds (S-ISA
dma_copy), so padded tokens leave the cache untouched without a remap or a branch on slot values. The
public API has already rejected slots below -1 or past the cache.

Reference: nkilab.reference.paged.write_kv_cache.
"""

from ._shim import nisa, nki, nl
from ._tiling import PMAX


@nki.jit
def write_kv_cache_kernel(key, value, key_cache, value_cache, slot_mapping):
    """Scatter T tokens into a paged cache, in place.

    Dimensions:  T new tokens; num_blocks x block_size slots; Hkv kv heads of D.
    Args:        key, value: [T, Hkv, D] cache dtype, HBM.
                 key_cache, value_cache: [num_blocks, block_size, Hkv, D], HBM, updated in place.
                 slot_mapping: [T] int32, HBM; -1 = skip, else in [0, num_blocks * block_size).
    Returns:     (key_cache, value_cache), the same HBM tensors.
    Tiling:      tokens in PMAX-row tiles (one index load, then one (v3+) or n (v2) DMAs per cache).
    """
    t_total, hkv, d = key.shape
    num_blocks, block_size = key_cache.shape[0], key_cache.shape[1]
    row = hkv * d
    num_slots = num_blocks * block_size
    vector_dma = nisa.get_nc_version() != nisa.nc_version.gen2  # indirect vector_offset DMA is v3+
    slots_hbm = slot_mapping.reshape((t_total, 1))
    pairs = [(new.reshape((t_total, row)), cache.reshape((num_slots, row)))
             for new, cache in ((key, key_cache), (value, value_cache))]
    for start in range(0, t_total, PMAX):
        n = min(PMAX, t_total - start)
        slots = nl.ndarray((n, 1), nl.int32, buffer=nl.sbuf)
        nisa.dma_copy(dst=slots, src=slots_hbm[start : start + n, :])
        for new_rows, cache_rows in pairs:
            if vector_dma:
                nisa.dma_copy(
                    dst=cache_rows.ap([[row, n], [1, row]], offset=0, vector_offset=slots, indirect_dim=0),
                    src=new_rows[start : start + n, :],
                    oob_mode=nisa.oob_mode.skip,
                )
            else:
                for t in range(n):
                    nisa.dma_copy(
                        dst=cache_rows.ap([[row, 1], [1, row]], offset=0, scalar_offset=slots[t : t + 1, :],
                                          indirect_dim=0),
                        src=new_rows[start + t : start + t + 1, :],
                        oob_mode=nisa.oob_mode.skip,
                    )
    return key_cache, value_cache
