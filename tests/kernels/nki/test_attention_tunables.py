"""The NKI flash-attention kernel's tunables (`_attention_tunables`) and its LNC=2 variant: every setting computes
the same attention, overrides go through the launcher, bad values are refused naming the parameter."""

import numpy as np
import pytest

from nkilab.kernels.nki import launch_attention
from nkilab.kernels.nki._attention_tunables import NAMES
from nkilab.reference.attention import attention as reference_attention
from nkilab.reference.dtypes import numpy_dtype


def _inputs(sq, skv, hq, hkv, d=64, dtype="bfloat16", seed=0):
    rng = np.random.default_rng(seed)
    dt = numpy_dtype(dtype)
    return (rng.standard_normal((1, sq, hq, d)).astype(dt), rng.standard_normal((1, skv, hkv, d)).astype(dt),
            rng.standard_normal((1, skv, hkv, d)).astype(dt))


def _run(q, k, v, target="trn2", **kwargs):
    return launch_attention.attention(q, k, v, causal=True, scale=q.shape[3] ** -0.5, target=target, **kwargs)


def test_defaults_per_generation_and_dtype():
    trn2, inf2 = launch_attention.default_tunables("trn2", "bfloat16"), launch_attention.default_tunables("inf2",
                                                                                                        "bfloat16")
    assert set(trn2) == set(inf2) == set(NAMES)
    assert trn2["qk_dma_transpose"] == 1 and trn2["p_dma_chunks"] > 0  # dma_transpose exists from v3 on
    assert inf2["qk_dma_transpose"] == 0 and inf2["p_dma_chunks"] == 0
    assert launch_attention.default_tunables("trn2", "float32")["kv_step"] == trn2["kv_step"] // 2


# two key steps with kv_step=512, a causal diagonal, a ragged last chunk (Skv = 1100)
@pytest.mark.parametrize("tunables", [
    dict(qk_dma_transpose=0, p_dma_chunks=0, pipeline_lag=1),  # the TensorE transposes of v2, on trn2
    dict(p_dma_chunks=16, q_prefetch=1),  # every pᵀ chunk of a whole key step's item by DMA
    dict(kv_step=512, pipeline_lag=3, scalar_copies=4, resident_kv_bytes=0),
    dict(head_block_elems=64),  # one query head per block
    dict(score_buffers=1),  # every QKᵀ overwrites the one score tile
    dict(kv_step=2048, score_buffers=0),  # a new score tile per item (NeuronCore-v2's default)
], ids=["tensor-transposes", "all-p-by-dma", "small-steps-streamed", "one-head-blocks", "one-score-buffer",
        "score-tile-per-item"])
def test_every_setting_matches_the_reference(tunables):
    q, k, v = _inputs(300, 1100, 4, 2)
    out = _run(q, k, v, tunables=tunables).astype(np.float64)
    ref = reference_attention(*(a.astype(np.float64) for a in (q, k, v)), scale=0.125, causal=True)
    np.testing.assert_allclose(out, ref, atol=2e-2, rtol=0)  # bf16 p and outputs: ~2^-8 relative, |out| < 3


@pytest.mark.parametrize("shape", [(300, 260, 4, 2), (300, 260, 2, 1), (100, 260, 4, 2)],
                         ids=["rows-split-gqa", "rows-split-mqa", "one-tile-groups-split"])
def test_lnc2_matches_lnc1_bitwise(shape):
    """LNC=2 deals query-row tiles (zigzag), or with a single tile the (b, kv head) groups, to the two cores."""
    q, k, v = _inputs(*shape)
    np.testing.assert_array_equal(_run(q, k, v, lnc=2), _run(q, k, v))


def test_lnc2_refused_on_inf2():
    q, k, v = _inputs(8, 8, 2, 1)
    with pytest.raises(Exception, match="LNC 2"):
        _run(q, k, v, target="inf2", lnc=2)


@pytest.mark.parametrize("tunables, match", [
    (dict(kv_stp=1024), "tunables: unknown name"),
    (dict(kv_step=100), "kv_step: must be an int >= 128"),
    (dict(kv_step=700), "kv_step: must be a multiple of 128"),
    (dict(pipeline_lag=0), "pipeline_lag: must be an int >= 1"),
    (dict(p_dma_chunks=1.5), "p_dma_chunks: must be an int"),
    (dict(q_prefetch=True), "q_prefetch: must be an int"),
    (dict(score_buffers=4), "score_buffers: 4 score tiles of 2 PSUM banks each exceed the 6 banks"),
])
def test_bad_tunables_name_the_parameter(tunables, match):
    q, k, v = _inputs(8, 8, 2, 1)
    with pytest.raises(ValueError, match=match):
        _run(q, k, v, tunables=tunables)


def test_tunables_must_be_a_dict():
    q, k, v = _inputs(8, 8, 2, 1)
    with pytest.raises(TypeError, match="tunables: must be a dict"):
        _run(q, k, v, tunables=[("kv_step", 512)])
