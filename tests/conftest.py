"""Hypothesis profiles and device markers shared by the whole suite.

Profiles (select with HYPOTHESIS_PROFILE=ci|dev|thorough; CI uses `ci`):
  ci        few examples, no deadline, failure blobs printed so any CI failure replays locally
  dev       default for local runs
  thorough  many examples, for hunting bugs before a release
"""

import os

import pytest
from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=10, derandomize=True, **_COMMON)
settings.register_profile("dev", max_examples=30, **_COMMON)
settings.register_profile("thorough", max_examples=500, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    """Skip `gpu` tests without CUDA and `neuron` tests without the SDK, saying why."""
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    skip_neuron = pytest.mark.skip(reason="needs the Neuron SDK and a Neuron device")
    cuda = _has_cuda()
    for item in items:
        if "gpu" in item.keywords and not cuda:
            item.add_marker(skip_gpu)
        if "neuron" in item.keywords:
            item.add_marker(skip_neuron)
