"""Shared constants and input builders of the emulator's op tests (`tests/emulator/test_ops_*.py`)."""

import ml_dtypes
import numpy as np

from nkilab.harness.emulator import TARGETS, nl

ALL_TARGETS = tuple(TARGETS)
GEN3_PLUS = ("trn2", "trn3")
bf16 = ml_dtypes.bfloat16


def uniform_f32(*shape, seed=0, lo=-2.0, hi=2.0):
    """A float32 array of `shape`, uniform in [lo, hi), reproducible from `seed`."""
    return np.random.default_rng(seed).uniform(lo, hi, shape).astype(np.float32)


def new_like(t, dtype=None, shape=None, buffer=nl.sbuf):
    """A new tile like `t` (inside a kernel), optionally with another dtype, shape or buffer."""
    return nl.ndarray(shape or t.shape, dtype or t.dtype, buffer=buffer)
