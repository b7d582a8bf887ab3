"""qmatmul tunables: defaults per class, a caller's overrides reach the kernel (and change its schedule, never its
result beyond the rounding budget), bad overrides are refused naming the parameter and the rule."""

import ml_dtypes
import numpy as np
import pytest

from nkilab.harness import checks
from nkilab.harness.emulator import run
from nkilab.kernels.nki import launch_qmatmul
from nkilab.kernels.nki.qmatmul.tuning import TUNABLES, check_overrides, defaults
from nkilab.reference.matmul import qmatmul as reference_qmatmul
from nkilab.reference.quant import quantize_weight


def _problem(m, k, n, scheme="int8", group_size=None, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, k)).astype(np.float32), quantize_weight(rng.standard_normal((k, n)), scheme,
                                                                             group_size)


def test_defaults_per_class():
    assert defaults("int8", v2=False)["decode_max_m"] == 16
    assert defaults("int4", v2=True)["decode_max_m"] == 32
    assert set(defaults("fp8_e4m3", v2=True)) == set(TUNABLES)


@pytest.mark.parametrize("tuning", [
    dict(decode_lookahead=0), dict(decode_lookahead=5, decode_dma_cols=256), dict(decode_psum_banks=1),
    dict(decode_min_dma_cols=128), dict(decode_merge_bytes=1, decode_dma_cols=256), dict(decode_max_m=0, x_chunk=256),
    dict(decode_max_m=0, prefill_psum_banks=1), dict(decode_max_m=0, prefill_sbuf_bytes=1),
], ids=lambda t: ",".join(f"{k}={v}" for k, v in t.items()))
@pytest.mark.parametrize("target", ["inf2", "trn2"])
def test_overrides_keep_the_result(target, tuning):
    x, qw = _problem(4, 512, 640, "int4", 64, seed=3)
    y = launch_qmatmul.qmatmul(x, qw, target=target, tuning=tuning)
    result = checks.compare(y, reference_qmatmul(x, qw), reference_qmatmul(x, qw, compute_dtype=ml_dtypes.bfloat16))
    assert result.passed, str(result)


def test_override_changes_the_schedule():
    x, qw = _problem(2, 1024, 4096)

    def dma_copies(tuning):
        _, args, kwargs = launch_qmatmul.traceable(dict(m=2, k=1024, n=4096, scheme="int8", dtype="float32"), "trn2",
                                                   tuning)
        return run(launch_qmatmul.qmatmul_kernel, *args, target="trn2", mode="trace", **kwargs).trace \
            .instruction_mix()["dma"]["dma_copy"]

    # 1024-column blocks instead of one 4096-column block: 8 K-step weight DMAs and one store (decode stores a block
    # with one DMA) per extra block; the four blocks' scales (32 bytes per partition each) still load in one DMA
    assert dma_copies(dict(decode_dma_cols=1024)) - dma_copies(dict(decode_dma_cols=4096)) == (8 + 1) * (4 - 1)
    # one scale DMA per block once a block's scales alone reach decode_merge_bytes
    assert dma_copies(dict(decode_dma_cols=1024, decode_merge_bytes=32)) - dma_copies(dict(decode_dma_cols=1024)) \
        == 4 - 1


@pytest.mark.parametrize("tuning, error, words", [
    ([("decode_max_m", 4)], TypeError, "must be a dict"),
    (dict(decode_lookahed=1), ValueError, "unknown parameter 'decode_lookahed'"),
    (dict(decode_lookahead=True), TypeError, "tuning['decode_lookahead']: must be an int"),
    (dict(x_chunk=300), ValueError, "tuning['x_chunk']: must be >= 256, a multiple of 256, got 300"),
    (dict(decode_psum_banks=7), ValueError, "<= 6"),
    (dict(decode_max_m=-1), ValueError, ">= 0"),
])
def test_bad_overrides_are_named(tuning, error, words):
    with pytest.raises(error, match=words.replace("[", r"\[").replace("]", r"\]")):
        check_overrides(tuning)
    x, qw = _problem(1, 128, 8)
    with pytest.raises(error):
        launch_qmatmul.qmatmul(x, qw, target="trn2", tuning=tuning)
