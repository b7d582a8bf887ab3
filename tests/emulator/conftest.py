"""Fixtures for emulator tests: `run_tiles` runs a body of nisa calls on SBUF tiles loaded from arrays."""

import pytest

from nkilab.harness.emulator import nisa, nl, run

def tile_kernel(body):
    """A kernel that DMAs each array argument into an SBUF tile of its shape, calls `body(*tiles)`, and
    returns each tile `body` returns (PSUM ones via tensor_copy) as a shared_hbm output."""

    def kernel(*arrays):
        tiles = []
        for a in arrays:
            t = nl.ndarray(a.shape, a.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=t, src=a)
            tiles.append(t)
        outs = []
        for o in body(*tiles):
            if o.buffer == "psum":
                s = nl.ndarray(o.shape, o.dtype, buffer=nl.sbuf)
                nisa.tensor_copy(dst=s, src=o)
                o = s
            h = nl.ndarray(o.shape, o.dtype, buffer=nl.shared_hbm)
            nisa.dma_copy(dst=h, src=o)
            outs.append(h)
        return tuple(outs)

    kernel.__name__ = getattr(body, "__name__", "tile_kernel")
    return kernel


def _run_tiles(body, *arrays, target="trn2", mode="full"):
    return run(tile_kernel(body), *arrays, target=target, mode=mode).outputs


@pytest.fixture
def run_tiles():
    """run_tiles(body, *arrays, target=, mode=) -> outputs (a tuple of arrays) of `body` on SBUF copies of arrays."""
    return _run_tiles
