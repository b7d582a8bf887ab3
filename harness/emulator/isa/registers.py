"""Register instructions: `register_alloc/move/load/store` (S-ISA). Registers are sequencer state, not engine
instructions, so they add nothing to the trace."""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..errors import NkiValidationError
from ..registers import VirtualRegister
from ..indexing import scalar_value
from ..tensor import NkiTensor
from .issue import current, touch


def register_alloc(x: int | None = None) -> VirtualRegister:
    """A new register, optionally holding the immediate int `x`."""
    current()
    return VirtualRegister(x)


def register_move(dst: VirtualRegister, src) -> None:
    """dst = src (an int or another register)."""
    _writable(dst)
    dst.value = src.value if isinstance(src, VirtualRegister) else int(src)


def register_load(dst: VirtualRegister, src: NkiTensor) -> None:
    """dst = the single element of `src`, an integer tensor in HBM or SBUF (unknown in trace mode when src's values
    are not computed). A register takes the element's 32 bits as an integer, so a float tensor would load its bit
    pattern, not its value: the emulator rejects it."""
    _writable(dst)
    if not isinstance(src, NkiTensor) or src.size != 1:
        raise NkiValidationError("register_load", "src", "a 1-element tensor", getattr(src, "shape", src))
    if not dtypes.is_int(src.dtype) or src.buffer == "psum":
        raise NkiValidationError("register_load", "src", "an integer tensor in HBM or SBUF",
                                 f"{dtypes.name(src.dtype)} in {src.buffer}")
    touch(src)
    dst.value = scalar_value(src)


def register_store(dst: NkiTensor, src: VirtualRegister) -> None:
    """Write the register's value into the 1-element tensor `dst`."""
    if not isinstance(dst, NkiTensor) or dst.size != 1:
        raise NkiValidationError("register_store", "dst", "a 1-element tensor", getattr(dst, "shape", dst))
    touch(dst)
    if src.value is None:
        dst.storage.data = None
    else:
        dst.write(dtypes.cast(np.array([src.value], np.int64), dst.dtype))


def _writable(reg: VirtualRegister) -> None:
    if not isinstance(reg, VirtualRegister):
        raise TypeError(f"dst: {reg!r} is not a VirtualRegister (use nisa.register_alloc())")
    if reg.frozen:
        raise NkiValidationError("register_move", "dst", "not a loop induction register (read-only)", reg)
