"""`VirtualRegister`: an engine-sequencer register holding a runtime int32 (loop counter, dynamic offset).

Registers are runtime values: the emulator knows them (it runs the loop), but a kernel may not turn
one into a Python int — the real tracer raises TypeError there (S-ISA VirtualRegister note) — so
`int(reg)`, `reg * 128`, `range(reg)` and `if reg:` raise here too. Use a register as `scalar_offset`
in `.ap()` or as a `fori_loop` bound. In trace mode a register loaded from a tensor whose values were
not computed holds `None` (unknown).
"""

from __future__ import annotations

from .errors import NkiTraceError


class VirtualRegister:
    """A 32-bit register; `frozen` ones (loop counters) cannot be written."""

    __slots__ = ("value", "frozen")

    def __init__(self, state: int | None = None, frozen: bool = False):
        self.value = None if state is None else int(state)
        self.frozen = frozen

    def _runtime(self, *_args):
        raise NkiTraceError("a VirtualRegister is a runtime value: use it as .ap(scalar_offset=...) or a loop bound, "
                            "not in Python arithmetic, int(), range() or if")

    __int__ = __index__ = __bool__ = __add__ = __radd__ = __mul__ = __rmul__ = __sub__ = __rsub__ = _runtime
    __floordiv__ = __mod__ = __lt__ = __le__ = __gt__ = __ge__ = _runtime

    def __repr__(self) -> str:
        return f"VirtualRegister({self.value}{', frozen' if self.frozen else ''})"
