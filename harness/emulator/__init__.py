"""NumPy emulator of the NKI API (`nki.language`, `nki.isa`, `nki.jit`, `nki.simulate`), with strict
per-generation validation and an instruction trace for the performance model.

    from nkilab.harness.emulator import nki, nl, nisa, run
    out = nki.simulate(kernel)(a, b)                               # like the SDK's simulator
    res = run(kernel, a, b, target="trn1", mode="trace")           # outputs + Trace

Module map: dtypes, storage (allocations), indexing (view helpers), tensor (NkiTensor, views, .ap), memory
(allocation), liveness (capacity), language (nl), isa/ (one module per engine), collectives (nki.collectives),
cores (LNC program scheduling), validate (rules), jit (run/jit/simulate), trace; the hardware facts per target
are `nkilab.harness.chips`.
"""

import types

from nkilab.harness.chips import NEURON_TARGETS, get_target

from . import collectives
from . import isa as nisa
from . import language as nl
from . import nki_typing
from .errors import NkiTraceError, NkiValidationError
from .jit import Kernel, RunResult, jit, run, simulate
from .tensor import NkiTensor
from .trace import Trace

# the Neuron rows of the hardware table (`nkilab.harness.chips`): the targets a kernel runs on
TARGETS = {name: get_target(name) for name in NEURON_TARGETS}

nki = types.ModuleType("nki", "Emulated `nki` namespace: language, isa, collectives, jit, simulate, typing.")
nki.language, nki.isa, nki.collectives, nki.jit, nki.simulate = nl, nisa, collectives, jit, simulate
nki.typing, nki.dtype = nki_typing, nl.DType  # `nki.dtype` is usable as an annotation (S-LIB kernels use it)

__all__ = ["Kernel", "NkiTensor", "NkiTraceError", "NkiValidationError", "RunResult", "TARGETS", "Trace", "collectives",
           "jit", "nisa", "nki", "nl", "run", "simulate"]
