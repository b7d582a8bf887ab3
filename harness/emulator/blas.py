"""Keep NumPy's OpenBLAS single-threaded while a kernel is emulated.

Emulated kernels issue thousands of small matmuls ([128, 128] x [128, 512]); OpenBLAS threads them,
and on a shared 2-core machine its worker threads spin-wait for cores, which made the tiled-matmul
benchmark ~10x slower than single-threaded (measured here: 6.3 s vs 0.59 s under load average ~5).
`single_threaded()` sets OpenBLAS to one thread for the duration of a run and restores the previous
count when the last concurrent run (runs in several threads overlap) leaves it. It looks the
thread-control symbols up in the OpenBLAS NumPy loaded; with any other BLAS (MKL, Accelerate) it does
nothing.
"""

from __future__ import annotations

import contextlib
import ctypes

from .held_setting import HeldSetting

_SYMBOLS = (("openblas_get_num_threads", "openblas_set_num_threads"),
            ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
            ("openblas_get_num_threads64_", "openblas_set_num_threads64_"))


def _controls():
    """(get, set) thread-count functions of the loaded OpenBLAS, or None."""
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get_name, set_name in _SYMBOLS:
            if hasattr(lib, get_name) and hasattr(lib, set_name):
                return getattr(lib, get_name), getattr(lib, set_name)
    return None


_CONTROLS = _controls()


def _one_thread() -> int:
    get_threads, set_threads = _CONTROLS
    before = get_threads()
    set_threads(1)
    return before


_ONE_THREAD = HeldSetting(_one_thread, lambda before: _CONTROLS[1](before)) if _CONTROLS is not None else None


@contextlib.contextmanager
def single_threaded():
    """OpenBLAS runs on one thread inside the block, from the first concurrent entry to the last exit (no-op without
    OpenBLAS controls)."""
    if _ONE_THREAD is None:
        yield
        return
    with _ONE_THREAD():
        yield
