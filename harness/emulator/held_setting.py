"""A process-wide setting held while any emulated run is active (runs in several threads overlap).

`HeldSetting(apply, restore)`: entering the first of any number of concurrent `with setting():` blocks
calls `apply()` (which returns what to restore), leaving the last one calls `restore(saved)`. Used for
the OpenBLAS thread count (`blas.py`) and the GC threshold (`gc_tuning.py`).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable


class HeldSetting:
    """Reference-counted process-wide setting (see module docstring)."""

    def __init__(self, apply: Callable[[], object], restore: Callable[[object], None]):
        self._apply, self._restore = apply, restore
        self._lock = threading.Lock()
        self._inside = 0
        self._saved = None

    @contextlib.contextmanager
    def __call__(self):
        with self._lock:
            if self._inside == 0:
                self._saved = self._apply()
            self._inside += 1
        try:
            yield
        finally:
            with self._lock:
                self._inside -= 1
                if self._inside == 0:
                    self._restore(self._saved)
