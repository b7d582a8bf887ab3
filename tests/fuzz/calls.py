"""The fuzz suite's calls: a public call's arguments (`Call`), a rule-breaking variant of one (`Malformed`), their
NumPy / torch forms and strided views, running one on a backend, snapshots proving nothing was mutated, and the
check of a result against the float64 reference.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import ml_dtypes
import numpy as np
import torch

from nkilab.harness.checks import check_against_reference, check_output, compare
from nkilab.kernels._adapter import to_numpy, to_torch
from nkilab.reference.quant import QuantizedActivation, QuantizedWeight

@dataclass(frozen=True)
class Call:
    """The public function's arguments: `args` positional (names in `names`), `kwargs` keywords (NumPy arrays)."""

    names: tuple[str, ...]
    args: tuple
    kwargs: dict = field(default_factory=dict)

    def replace(self, **named) -> "Call":
        """A copy with the named arguments (positional or keyword) replaced."""
        args = tuple(named.pop(n) if n in named else a for n, a in zip(self.names, self.args))
        return Call(self.names, args, {**self.kwargs, **named})

    def get(self, name: str):
        return self.args[self.names.index(name)] if name in self.names else self.kwargs[name]

    def arrays(self) -> dict:
        """{name: array} of every NumPy array argument (positional and keyword)."""
        items = list(zip(self.names, self.args)) + list(self.kwargs.items())
        return {n: a for n, a in items if isinstance(a, np.ndarray)}


class Malformed:
    """A call that breaks a documented rule; its error must name one of `names` (TypeError or ValueError). A plain
    class, so hypothesis reports a failing draw by its short repr rather than every array of the call."""

    def __init__(self, rule: str, call: Call, names: tuple[str, ...]):
        self.rule, self.call, self.names = rule, call, names

    def __repr__(self) -> str:
        return f"Malformed({self.rule!r}, names={self.names})"


def as_kind(call: Call, kind: str, requires_grad: str | None = None) -> Call:
    """The call with every NumPy array as a torch tensor (kind "torch"; `requires_grad` names one float argument to
    mark) or as is (kind "numpy"). Read-only arrays are copied by the conversion, so they stay NumPy."""
    if kind == "numpy":
        return call

    def conv(name, a):
        if not isinstance(a, np.ndarray) or not a.flags.writeable:
            return a
        try:
            t = to_torch(a.copy())
        except TypeError:  # a dtype torch lacks (float8_e4m3, e.g. a weight's data passed as `qw`): left NumPy
            return a
        return t.requires_grad_() if name == requires_grad else t

    return Call(call.names, tuple(conv(n, a) for n, a in zip(call.names, call.args)),
                {n: conv(n, a) for n, a in call.kwargs.items()})


# --- strided views --------------------------------------------------------------------------------------------------


VIEWS = ("transposed", "sliced", "expanded")


def view_of(a: np.ndarray, how: str, kind: str):
    """(view, values): a non-contiguous NumPy view or torch tensor and the NumPy values it holds.

    "transposed": `a`'s values with the axes stored in reverse order; "sliced": every other element of a buffer
    twice as long on the last axis; "expanded": `a[:1]` broadcast along axis 0 (stride 0; the values change to
    copies of the first row, so the reference runs on `values`), its non-finite elements set to 0: a fill that is
    never read in `a[:1]` (the paged caches' NaN in unused slots) would be live data in the other rows, and a valid
    draw stays finite (found by a nightly run, 2026-12-03: block 0's NaN slot 6 became a live value row of a
    sequence of 7 keys, which the reference multiplies by the hidden queries' 0 weights, as the README documents).
    0-d and empty arrays are returned as they are.
    """
    if a.ndim == 0 or a.size == 0:
        return (to_torch(a.copy()) if kind == "torch" else a), a
    if how == "expanded":
        base = a[:1].copy()
        if base.dtype.kind not in "biu":
            base[~np.isfinite(base.astype(np.float64))] = 0
        values = np.ascontiguousarray(np.broadcast_to(base, a.shape))
        view = to_torch(base).expand(*a.shape) if kind == "torch" else np.broadcast_to(base, a.shape)
        return view, values
    if how == "transposed" and a.ndim >= 2:
        axes = tuple(reversed(range(a.ndim)))
        stored = np.ascontiguousarray(a.transpose(axes))
        return (to_torch(stored).permute(*axes) if kind == "torch" else stored.transpose(axes)), a
    buf = np.zeros((*a.shape[:-1], 2 * a.shape[-1]), a.dtype)
    buf[..., ::2] = a
    return (to_torch(buf)[..., ::2] if kind == "torch" else buf[..., ::2]), a


def with_views(case, call: Call, how: str, kind: str) -> tuple[Call, Call]:
    """For `case` (a `fuzz.cases.OpCase`), (view call, values call): every array argument as a non-contiguous
    view (`view_of`), and the NumPy values those views hold (what the reference runs on). Index arrays and written
    caches are never expanded (that would change slots and block tables, or alias cache rows); they are sliced."""
    views, values = {}, {}
    for name, a in call.arrays().items():
        keep_values = how == "expanded" and (name not in case.floats or name in case.written)
        views[name], values[name] = view_of(a, "sliced" if keep_values else how, kind)
    return call.replace(**views), call.replace(**values)


def copied(call: Call) -> Call:
    """A deep copy of the call's NumPy arrays (a backend may write the caches; the reference needs the originals)."""
    def conv(a):
        return a.copy() if isinstance(a, np.ndarray) else a

    return Call(call.names, tuple(conv(a) for a in call.args), {n: conv(a) for n, a in call.kwargs.items()})


def run(case, call: Call, backend: str, target: str | None):
    """The public function on `call` with `backend` (and the NKI `target`)."""
    extra = {} if target is None else {"target": target}
    return case.op.api(*call.args, **call.kwargs, backend=backend, **extra)


def assert_matches(case, backend: str, out, values: Call) -> None:
    """`out` against the float64 reference on the NumPy `values` call, by the op's check rule (`Op.check`, the
    harness comparator), with one documented exception: NKI qmatmul rounds x to bfloat16 before TensorE (see its
    docstring), so its error budget is the naive bfloat16 run's — or, when that one naive run is luckier than 1/c of
    the kernel's rounding error, the naive run that rounds x to bfloat16 only, as the kernel does (x's rounding alone
    can then exceed it: a 50-example nightly run found K=32, N=1 fp16 x at 9.6e-4 against a naive error of 1.2e-4,
    where the result 0.0159 is a sum of 32 terms of about 0.05 that cancel; pinned in test_fuzz_valid.py)."""
    if case.name == "qmatmul" and backend == "nki":
        x, qw = values.args
        got = to_numpy(case.op.check.output(out))
        result = check_against_reference(got, case.op.reference, x, qw, compute_dtype=ml_dtypes.bfloat16)
        if not result.passed and isinstance(x, np.ndarray):
            rounded = np.asarray(case.op.reference(x.astype(ml_dtypes.bfloat16), qw, compute_dtype=np.float32))
            result = compare(got, case.op.reference(x, qw, compute_dtype=np.float64),
                             rounded.astype(got.dtype))
    else:
        result = check_output(case.op, out, values.args, values.kwargs)
    assert result.passed, str(result)


def snapshot(call: Call) -> dict:
    """{name: (dtype, shape, bytes)} of every array/tensor argument, to prove none was mutated (NaN-safe)."""
    out = {}
    items = list(zip(call.names, call.args)) + list(call.kwargs.items())
    for name, a in items:
        if isinstance(a, torch.Tensor):
            dense = torch.empty(a.shape, dtype=a.dtype).copy_(a.detach().cpu())  # standard strides, a copy
            raw = dense.reshape(-1).view(torch.uint8).numpy().tobytes() if a.numel() else b""
            out[name] = (str(a.dtype), tuple(a.shape), raw)
        elif isinstance(a, np.ndarray):
            out[name] = (a.dtype.name, a.shape, np.ascontiguousarray(a).tobytes())
        elif isinstance(a, (QuantizedWeight, QuantizedActivation)):
            out[name] = tuple(np.ascontiguousarray(v).tobytes() if isinstance(v, np.ndarray) else repr(v)
                              for v in dataclasses.astuple(a))
    return out
