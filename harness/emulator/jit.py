"""Running kernels: `run`, `nki.jit`, `nki.simulate`, `kernel[lnc]`.

Execution model (as the official simulator, S-SIM): tensors arguments arrive as HBM `NkiTensor`s
(`hbm`; `shared_hbm` under LNC 2) over the caller's arrays; every instruction runs eagerly, in
program order; inputs the kernel writes are updated in place; the tensors the kernel returns come
back as NumPy arrays (torch tensors when the inputs were torch), except that a returned argument
comes back as the caller's own array, not a copy (a kernel that returns the cache it wrote costs
nothing more than its writes). LNC 2 runs program 0 and program 1
(each with its own SBUF/PSUM and `nl.program_id()`), sharing HBM, interleaved at their synchronization
points (`cores.py`); program 1's `shared_hbm` allocations are program 0's. `mode="trace"` records the
instruction trace without float math, so outputs come back as None. On-chip capacity is checked by
liveness when the kernel returns (`liveness.py`). Runs in different threads are independent.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from nkilab.harness.chips import get_target
from nkilab.reference.dtypes import is_torch, to_numpy, to_torch

from . import blas, context, cores, dtypes, gc_tuning, liveness
from .context import ProgramContext, RunContext
from .errors import NkiValidationError
from .memory import wrap
from .tensor import NkiTensor
from .trace import Trace

MODES = ("full", "trace")


@dataclass
class RunResult:
    """outputs: what the kernel returned (arrays, a tuple of them, or None entries in trace mode); trace: its
    instructions."""

    outputs: object
    trace: Trace


class Kernel:
    """A kernel function with a launch LNC degree (`kernel[2]`)."""

    def __init__(self, fn, lnc: int | None = None):
        self.fn, self.lnc = fn, lnc
        functools.update_wrapper(self, fn)

    def __getitem__(self, lnc) -> "Kernel":
        lnc = lnc[0] if isinstance(lnc, tuple) and len(lnc) == 1 else lnc
        if lnc not in (1, 2):
            raise ValueError(f"kernel[lnc]: lnc must be 1 or 2, got {lnc!r}")
        return Kernel(self.fn, lnc)

    def __call__(self, *args, **kwargs):
        if context.active() is not None:  # a kernel calling a sub-kernel: just inline it
            return self.fn(*args, **kwargs)
        return run(self, *args, **kwargs).outputs


def jit(fn=None, **_options):
    """`@nki.jit` / `@nki.jit(...)`: a Kernel; calling it with arrays emulates it (options are accepted and ignored)."""
    if fn is None:
        return lambda f: Kernel(f)
    return fn if isinstance(fn, Kernel) else Kernel(fn)


def simulate(kernel):
    """`nki.simulate(kernel)(*arrays, **kwargs)` → the kernel's outputs (full mode, target from the environment)."""
    k = kernel if isinstance(kernel, Kernel) else Kernel(kernel)
    return lambda *args, **kwargs: run(k, *args, **kwargs).outputs


def run(kernel, *args, target: str | None = None, mode: str = "full", lnc: int | None = None, **kwargs) -> RunResult:
    """Emulate `kernel(*args, **kwargs)` for `target` and return its outputs and instruction trace.

    Args:
        kernel: a plain function, an `nki.jit` kernel, or `kernel[2]`.
        args, kwargs: NumPy arrays (ml_dtypes bf16/fp8 included) or CPU torch tensors become HBM tensors;
            anything else (ints, floats, tuples of ints, configs) is passed through as compile-time values.
        target: "inf2" | "trn1" | "trn2" | "trn3"; None reads NEURON_PLATFORM_TARGET_OVERRIDE, else "trn2".
        mode: "full" computes values; "trace" records instructions only (integer index values still computed).
        lnc: logical NeuronCore degree (1 or 2); default: the kernel's `[lnc]`, else 1.

    Returns:
        RunResult(outputs, trace): outputs converted like the inputs (NumPy, or torch if any input was torch).

    Raises:
        ValueError: bad mode / lnc / target. NkiValidationError: the kernel broke a rule of the target.
    """
    if mode not in MODES:
        raise ValueError(f"mode: {mode!r} is not one of {MODES}")
    fn = kernel.fn if isinstance(kernel, Kernel) else kernel
    lnc = lnc or (kernel.lnc if isinstance(kernel, Kernel) else None) or 1
    if lnc not in (1, 2):
        raise ValueError(f"lnc: must be 1 or 2, got {lnc!r}")
    tgt = get_target(target, neuron=True)
    if lnc == 2 and not tgt.lnc2:
        raise NkiValidationError("launch", "lnc", "LNC 2 only on trn2/trn3", lnc, tgt.name)
    run_ctx = RunContext(tgt, mode, Trace(getattr(fn, "__name__", "kernel"), tgt.name, lnc), lnc)
    use_torch = any(is_torch(a) for a in list(args) + list(kwargs.values()))
    write_back: list = []
    with context.activated(ProgramContext(run_ctx, 0)):
        buffer = "shared_hbm" if lnc > 1 else "hbm"
        t_args = [_to_tensor(a, buffer, write_back) for a in args]
        t_kwargs = {k: _to_tensor(v, buffer, write_back) for k, v in kwargs.items()}
    with blas.single_threaded(), gc_tuning.fewer_collections():
        result = cores.run_programs(run_ctx, fn, t_args, t_kwargs)
    liveness.check(run_ctx.lifetimes, tgt)
    originals = {id(t): a for t, a in zip(list(t_args) + list(t_kwargs.values()), list(args) + list(kwargs.values()))
                 if isinstance(t, NkiTensor)}
    outputs = _from_tensor(result, use_torch, originals)
    for original, staged in write_back:
        _copy_back(original, staged)
    return RunResult(outputs, run_ctx.trace)


def _to_tensor(x, buffer: str, write_back: list):
    if isinstance(x, (list, tuple)):
        return type(x)(_to_tensor(v, buffer, write_back) for v in x)
    if is_torch(x):
        if x.device.type != "cpu":
            raise TypeError(f"argument: torch tensor on {x.device}; the emulator takes CPU tensors")
        arr = to_numpy(x)
        staged = np.ascontiguousarray(arr)
        if staged is not arr or not arr.flags.writeable:
            write_back.append((x, staged))
        return wrap(staged, buffer)
    if isinstance(x, np.ndarray):
        if x.dtype == np.float64 or x.dtype == np.int64:
            raise TypeError(f"argument: {x.dtype} arrays have no NKI dtype; cast to float32/int32 first")
        staged = x if x.flags.c_contiguous and x.flags.writeable else np.ascontiguousarray(x).copy()
        if staged is not x:
            write_back.append((x, staged))
        return wrap(staged, buffer)
    return x


def _copy_back(original, staged: np.ndarray) -> None:
    if is_torch(original):
        original.copy_(_numpy_to_torch(staged))
    elif original.flags.writeable:
        original[...] = staged


def _numpy_to_torch(a: np.ndarray):
    if dtypes.name(a.dtype) == "float8_e4m3":  # no torch dtype for IEEE-style e4m3: hand back float32 values
        a = a.astype(np.float32)
    return to_torch(a)


def _from_tensor(out, use_torch: bool, originals: dict):
    """The kernel's result as arrays: an argument tensor as the caller's own array (`originals`: id(tensor) ->
    argument), any other tensor copied out."""
    if isinstance(out, (list, tuple)):
        return type(out)(_from_tensor(o, use_torch, originals) for o in out)
    if not isinstance(out, NkiTensor):
        return out
    if id(out) in originals:
        return originals[id(out)]
    vals = out.values()
    if vals is None:
        return None
    arr = np.array(vals, copy=True).reshape(out.shape)
    return _numpy_to_torch(arr) if use_torch else arr
