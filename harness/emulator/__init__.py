"""NumPy emulator of the NKI API (`nki.language`, `nki.isa`, `nki.jit`, `nki.simulate`), with strict
per-generation validation and an instruction trace for the performance model.

    from nkilab.harness.emulator import nki, nl, nisa, run
    out = nki.simulate(kernel)(a, b)                               # like the SDK's simulator
    res = run(kernel, a, b, target="trn1", mode="trace")           # outputs + Trace

Module map: dtypes, storage (allocations), indexing (view helpers), tensor (NkiTensor, views, .ap), memory
(allocation), liveness (capacity), language (nl), isa/ (one module per engine), collectives (nki.collectives),
cores (LNC program scheduling), validate (rules), jit (run/jit/simulate), trace; the hardware facts per target
are `nkilab.harness.chips`.

Sources the emulator's docstrings and comments cite by tag (paths in github.com/aws-neuron/aws-neuron-sdk, the
sources of awsdocs-neuron.readthedocs-hosted.com; the API stubs are the sources of its nki.isa / nki.language pages):
  S-ISA   nki/api/nki/isa/__init__.py (every nki.isa signature and docstring)
  S-NL    nki/api/nki/language/__init__.py (nki.language, NkiTensor, tile_size)
  S-SH    nki/api/nki.api.shared.rst (the dtype, ALU-op and activation tables)
  S-MIG   nki/migration/index.rst (the API changes from NKI 0.2 to 0.6, the kernel-language rules)
  S-LG    nki/get-started/nki-language-guide.rst
  S-RN    release-notes/components/nki.rst (the NKI release notes)
  S-SIM   nki/guides/nki_simulator.rst (nki.simulate)
  S-TILE  nki/get-started/about/tiling-overview.rst
  S-AP    nki/deep-dives/nki-aps.rst (access patterns, .ap())
  S-DGE   nki/deep-dives/nki-dge.rst (descriptor generation, indirect DMA)
  S-RND   about-neuron/arch/neuron-features/rounding-modes.rst
  S-A2, S-A3, S-A4  nki/guides/architecture/trainium_inferentia2_arch.rst, trainium2_arch.rst, trainium3_arch.rst
  S-LIB   github.com/aws-neuron/nki-library (AWS's NKI kernels)
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
