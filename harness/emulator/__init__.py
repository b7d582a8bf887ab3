"""NumPy emulator of the NKI API (`nki.language`, `nki.isa`, `nki.jit`, `nki.simulate`), with strict
per-generation validation and an instruction trace for the performance model.

    from nkilab.harness.emulator import nki, nl, nisa, run
    out = nki.simulate(kernel)(a, b)                               # like the SDK's simulator
    res = run(kernel, a, b, target="trn1", mode="trace")           # outputs + Trace

Module map: targets (hardware facts), dtypes, storage (allocations), indexing (view helpers), tensor
(NkiTensor, views, .ap), memory (allocation), language (nl), isa/ (one module per engine), validate (rules),
jit (run/jit/simulate), trace.
"""

import types

from . import collectives
from . import isa as nisa
from . import language as nl
from .errors import NkiTraceError, NkiValidationError
from .jit import Kernel, RunResult, jit, run, simulate
from .targets import TARGETS, Target, get_target
from .tensor import NkiTensor
from .trace import Trace

nki = types.ModuleType("nki", "Emulated `nki` namespace: language, isa, collectives, jit, simulate.")
nki.language, nki.isa, nki.collectives, nki.jit, nki.simulate = nl, nisa, collectives, jit, simulate

__all__ = ["Kernel", "collectives", "NkiTensor", "NkiTraceError", "NkiValidationError", "RunResult", "TARGETS", "Target", "Trace",
           "get_target", "jit", "nisa", "nki", "nl", "run", "simulate"]
