"""Every tensor argument of every op is read through its strides (issue 10, item 2): transposed, sliced and
expanded views of every argument, NumPy and torch, give the reference's result on every backend.

Before the fix the Triton kernels read slot_mapping, seq_lens and query_start_loc at offset `i` whatever their
stride: a sliced torch view wrote slots the caller never named and returned wrong attention outputs.
"""

import numpy as np
import pytest
import torch
from fuzz.calls import VIEWS, assert_matches, run, with_views
from fuzz.cases import BACKEND_IDS, BACKEND_TARGETS, CASES, PINNED

from nkilab.kernels import _registry, paged_attention, write_kv_cache


def test_issue_reproducer_sliced_slot_mapping():
    """A [::2] view of slot_mapping writes slots {0, 1, 2}, the view's values (it wrote {0, 1, 7})."""
    for backend in ("reference", "nki", "triton"):
        kc, vc = torch.zeros(2, 4, 1, 8), torch.zeros(2, 4, 1, 8)
        key = torch.randn(3, 1, 8)
        write_kv_cache(key, key, kc, vc, torch.tensor([0, 7, 1, 6, 2, 5])[::2], backend=backend)
        written = torch.nonzero(kc.reshape(8, -1).abs().sum(1)).flatten().tolist()
        assert written == [0, 1, 2], backend
        assert torch.equal(kc.reshape(8, 8)[[0, 1, 2]], key.reshape(3, 8)), backend


def test_sliced_paged_metadata():
    """seq_lens and query_start_loc as [::2] views (the kernel read the interleaved junk before the fix)."""
    rng = np.random.default_rng(0)
    q = torch.from_numpy(rng.standard_normal((5, 2, 16)).astype(np.float32))
    kc = torch.from_numpy(rng.standard_normal((4, 4, 1, 16)).astype(np.float32))
    vc = torch.from_numpy(rng.standard_normal((4, 4, 1, 16)).astype(np.float32))
    table = torch.tensor([[0, 1], [2, 3]], dtype=torch.int32)
    seq_lens = torch.tensor([6, 99, 3, 99], dtype=torch.int32)[::2]
    starts = torch.tensor([0, 77, 2, 77, 5], dtype=torch.int32)[::2]
    want = paged_attention(q, kc, vc, table, seq_lens.contiguous(), starts.contiguous(), backend="reference")
    for backend in ("nki", "triton"):
        got = paged_attention(q, kc, vc, table, seq_lens, starts, backend=backend)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-2 if backend == "nki" else 1e-5, atol=2e-2
                                   if backend == "nki" else 1e-5, err_msg=backend)


def test_every_registered_op_has_a_pinned_problem():
    assert set(PINNED) == set(_registry.OPS)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("how", VIEWS)
@pytest.mark.parametrize(("backend", "target"), BACKEND_TARGETS, ids=BACKEND_IDS)
@pytest.mark.parametrize("op", _registry.OPS)
def test_every_argument_as_a_view(op, backend, target, how, kind):
    case = CASES[op]
    sent, values = with_views(case, case.call(PINNED[op]), how, kind)
    assert_matches(case, backend, run(case, sent, backend, target), values)
