"""`nki.isa` enums (S-ISA; member values as the NKI 0.6 stubs `nki/api/nki/isa/__init__.py` give them), and the
coercion every op applies to its enum parameters.

Raw values for enum parameters: the 0.3 migration guide says raw integer enum values are rejected, yet AWS's own
nki-library (e.g. `_DGE_MODE_NONE = 3` passed as `dge_mode=`) compiles and runs on hardware, where an enum operand
is encoded by its value. The emulator follows the hardware: a raw value equal to a member's value is that member
(`dge_mode=3` is `dge_mode.none`); any other value is rejected with an NkiValidationError naming the parameter.
"""

from __future__ import annotations

import functools
from enum import Enum

from ..errors import NkiValidationError


class engine(Enum):
    unknown = 0
    tensor = 1
    scalar = 2
    gpsimd = 3
    dma = 4
    vector = 5
    sync = 6


class reduce_cmd(Enum):
    idle = 0
    reset = 1
    reduce = 2
    reset_reduce = 3
    load_reduce = 4


class dge_mode(Enum):
    unknown = 0
    swdge = 1
    hwdge = 2
    none = 3


class oob_mode(Enum):
    error = 0
    skip = 1


class matmul_perf_mode(Enum):
    none = "none"
    double_row = "double_row"


@functools.total_ordering
class nc_version(Enum):
    """NeuronCore version; members order by generation (gen2 < gen3 < gen4), as kernels compare them."""

    gen2 = 2
    gen3 = 3
    gen4 = 4

    def __lt__(self, other):
        if not isinstance(other, nc_version):
            return NotImplemented
        return self.value < other.value


class dma_engine(Enum):
    dma = 1
    gpsimd_dma = 2


# deprecated module constants kept by the SDK
tensor_engine, vector_engine, scalar_engine, gpsimd_engine, unknown_engine = (
    engine.tensor, engine.vector, engine.scalar, engine.gpsimd, engine.unknown)


def coerce(kind: type[Enum], value, op: str, param: str) -> Enum:
    """`value` as a member of `kind`: a member as is, a raw value by the member it encodes (see module docstring).

    Raises:
        NkiValidationError: value is neither a member nor a member's value.
    """
    if isinstance(value, kind):
        return value
    if not isinstance(value, bool):
        try:
            return kind(value)
        except (ValueError, TypeError):
            pass
    raise NkiValidationError(op, param, f"a nki.isa.{kind.__name__} member (or its value: "
                             f"{[m.value for m in kind]})", value)
