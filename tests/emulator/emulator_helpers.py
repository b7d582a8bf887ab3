"""Helpers for emulator tests: run a body of nisa calls on SBUF tiles loaded from arrays."""

from nkilab.harness.emulator import nisa, nl, run

ALL_TARGETS = ("inf2", "trn1", "trn2", "trn3")


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


def run_tiles(body, *arrays, target="trn2", mode="full"):
    """Outputs (a tuple of arrays) of `body` run on SBUF copies of `arrays`."""
    return run(tile_kernel(body), *arrays, target=target, mode=mode).outputs
