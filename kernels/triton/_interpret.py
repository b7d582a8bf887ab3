"""Decide, once, whether Triton kernels run on a CUDA GPU or under Triton's CPU interpreter, whatever was imported
first.

Triton decides per `@triton.jit` function, when it is *defined*, whether it is a compiled `JITFunction` or an
`InterpretedFunction`: it reads `TRITON_INTERPRET` then. Without a CUDA device this module sets the variable to 1
(a value the user already set is respected) before the kernel modules define their kernels — every kernel module
imports it first — so `backend="triton"` works on a plain CPU machine (slowly: every program instance runs in
Python).

Triton's own standard library (`tl.max`, `tl.sum`, `tl.cdiv`, ...) is defined when `triton` is first imported. A
runtime cannot control import order (`from transformers import LlamaForCausalLM` imports triton), so when triton came
first without the variable, those helpers are compiled-mode `JITFunction`s that refuse to be called from interpreted
code. Then every interpreted launch runs with `interpreted_helpers()` in force: a `JITFunction` called inside the
launch runs as the interpreter would have defined it (its Python source through `InterpretedFunction`), as a free
function and as a tensor method (`x.sum(0)`). Outside interpreted launches nothing changes; on a CUDA machine none
of this applies.

The interpreter has no bfloat16 arithmetic (triton-lang/triton#11584: `tl.dot` multiplies the raw uint16 bits), so
bfloat16 is reported unsupported while interpreting; float16/float32 and fp8 storage work.
"""

import contextlib
import functools
import os
import threading

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import triton  # noqa: E402  (must follow the environment set-up above)
import triton.language as tl  # noqa: E402
from triton.runtime.interpreter import InterpretedFunction  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

# Ask Triton itself, so our view and the one `@triton.jit` acts on always agree.
INTERPRET: bool = bool(triton.knobs.runtime.interpret)
# True when triton was imported before the variable was set: its standard library is compiled-mode
HELPERS_COMPILED: bool = INTERPRET and not isinstance(tl.max, InterpretedFunction)

_lock = threading.RLock()
_depth = 0  # interpreted launches in flight (the patch below is process-wide)
_interpreted: dict = {}  # id(JITFunction) -> (it, its InterpretedFunction); a JITFunction's own hash compiles it
_OWN = {name: JITFunction.__dict__.get(name) for name in ("__call__", "__get__")}  # the class's own, to restore


def _call_interpreted(jit_fn, *args, **kwargs):
    """A compiled-mode JITFunction called from interpreted code: run its source under the interpreter."""
    entry = _interpreted.get(id(jit_fn))
    if entry is None:
        entry = _interpreted[id(jit_fn)] = (jit_fn, InterpretedFunction(jit_fn.fn))  # holding jit_fn pins its id
    return entry[1](*args, **kwargs)


def _bind(jit_fn, obj, owner=None):
    """`tensor.sum` and friends are JITFunctions stored on the tensor class: bind `self` like a method."""
    return jit_fn if obj is None else functools.partial(jit_fn, obj)


@contextlib.contextmanager
def interpreted_helpers():
    """While in force, compiled-mode JITFunctions (Triton's standard library when triton was imported before
    TRITON_INTERPRET was set) run under the interpreter when called, as functions or tensor methods."""
    global _depth
    with _lock:
        if _depth == 0:
            JITFunction.__call__, JITFunction.__get__ = _call_interpreted, _bind
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for name, own in _OWN.items():  # back to the class's own behaviour
                    if own is None:
                        delattr(JITFunction, name)
                    else:
                        setattr(JITFunction, name, own)


if HELPERS_COMPILED:
    _run = InterpretedFunction.run

    @functools.wraps(_run)
    def _run_with_helpers(self, *args, **kwargs):
        with interpreted_helpers():
            return _run(self, *args, **kwargs)

    InterpretedFunction.run = _run_with_helpers
