"""rms_norm: RMSNorm over the last axis, optionally fused with the residual add of a pre-norm block — the op family,
declared once (public function, rules, reference, workload, check, plot axes, GPU-bench baselines).

Per rank, a Llama decoder layer normalizes the hidden states twice (before attention and before the MLP), each
fused with the residual add of the sublayer before it; rows = decode batch or prefill length, H = the model width
(RMSNorm weights are not sharded by tensor parallelism).
"""

from __future__ import annotations

import numpy as np

from nkilab import reference
from nkilab.kernels import _backends, _checks
from nkilab.kernels._adapter import dtype_name, numpy_dtype, to_numpy, to_torch
from nkilab.kernels.ops._op import Check, Launcher, Op, Plot, TorchOp
from nkilab.kernels.ops._problem import Problem
from nkilab.reference.dtypes import itemsize


def rms_norm(x, weight, *, eps=1e-6, residual=None, backend="auto", target=None):
    """y = x / sqrt(mean(x², last axis) + eps) · weight; with `residual`, h = x + residual first, returns (y, h).

    Dimensions: [..., H]: leading dims are rows (flattened to [N, H] for the backends), H the normalized axis.

    Args:
        x: [..., H] float16|bfloat16|float32|float64 (NumPy or torch), H >= 1.
        weight: [H], x's dtype.
        eps: finite number > 0, added to the mean square.
        residual: None, or x's shape and dtype: the fused pre-norm residual of Llama blocks, h = x + residual (the
            new residual stream, in x's dtype) is normalized and returned too.
        backend: "reference" | "nki" | "triton" | "auto" (see nkilab.kernels.api).
        target: Neuron target of the NKI backend ("inf2" | "trn1" | "trn2" | "trn3"); None = its default.

    Returns:
        y: x's shape, dtype and kind; with a residual, (y, h), both so.

    Raises:
        TypeError / ValueError: naming the argument, before any work (shapes, dtypes, eps, backend).

    Example:
        >>> import numpy as np
        >>> rms_norm(np.array([[3.0, 4.0]]), np.array([1.0, 2.0]), eps=1e-12, backend="reference").round(4).tolist()
        [[0.8485, 2.2627]]
    """
    eps = check(x, weight, eps, residual)
    hidden = int(x.shape[-1])
    rows = x.reshape(-1, hidden)
    problem = dict(dtype=dtype_name(x), hidden=hidden, residual=residual is not None, empty=_backends.empty(rows))
    name, impl = _backends.choose(OP, backend, problem, target=target)
    res = None if residual is None else _backends.to_backend(name, residual.reshape(-1, hidden))
    out = impl(_backends.to_backend(name, rows), _backends.to_backend(name, weight), eps=eps, residual=res)
    if residual is None:
        return _backends.back(out, x).reshape(x.shape)
    return tuple(_backends.back(a, x).reshape(x.shape) for a in out)


def check(x, weight, eps, residual) -> float:
    """Validate RMSNorm inputs; returns eps as a float."""
    if residual is None:
        _checks.arrays(x=x, weight=weight)
    else:
        _checks.arrays(x=x, weight=weight, residual=residual)
    if x.ndim < 1:
        raise ValueError(f"x: must be at least 1-D [..., H], got shape {tuple(x.shape)}")
    _checks.float_dtype("x", x)
    hidden = x.shape[-1]
    if hidden < 1:
        raise ValueError(f"x: the normalized (last) axis H must be >= 1, got shape {tuple(x.shape)}")
    if tuple(weight.shape) != (hidden,):
        raise ValueError(f"weight: shape must be (H,) = ({hidden},) (x's last axis), got {tuple(weight.shape)}")
    _checks.same_dtype("x, weight", x, weight)
    eps = _checks.positive_number("eps", eps)
    if residual is not None:
        if tuple(residual.shape) != tuple(x.shape):
            raise ValueError(f"residual: shape must equal x's {tuple(x.shape)}, got {tuple(residual.shape)}")
        _checks.same_dtype("x, residual", x, residual)
    return eps


def _run_reference(x, weight, *, eps, residual=None):
    out = reference.rms_norm(x, weight, eps=eps, residual=residual)
    return out.astype(x.dtype) if residual is None else tuple(a.astype(x.dtype) for a in out)


# --- the check: y (and h) against the float64 reference -----------------------------------------------------------


def stacked(out):
    """y, or y and h stacked into one [2, ..., H] array (NumPy or torch in; NumPy out)."""
    return np.stack([to_numpy(a) for a in out]) if isinstance(out, tuple) else to_numpy(out)


def stacked_reference(x, weight, *, eps, residual=None, compute_dtype=np.float64, sum_order="numpy"):
    """The reference in `stacked` form."""
    return stacked(reference.rms_norm(x, weight, eps=eps, residual=residual, compute_dtype=compute_dtype,
                                      sum_order=sum_order))


# --- workload -----------------------------------------------------------------------------------------------------


def spec(problem: Problem) -> dict:
    p = problem.params
    return dict(dtype=problem.dtype, hidden=p["hidden"], residual=p["residual"])


def flops(problem: Problem) -> float:
    """Per element: square and sum (2), times rstd and weight (2), plus the residual add (1)."""
    p = problem.params
    return (5.0 if p["residual"] else 4.0) * p["rows"] * p["hidden"]


def hbm_bytes(problem: Problem) -> float:
    """x read and y written, the weight read once; the residual read and h written when fused."""
    p = problem.params
    arrays = 4 if p["residual"] else 2
    return itemsize(problem.dtype) * (arrays * p["rows"] * p["hidden"] + p["hidden"])


def make_inputs(problem: Problem, rng: np.random.Generator, zeros: bool):
    """(x [rows, H], weight [H] near 1) and eps = 1e-5 (Llama-3.1's rms_norm_eps), residual normal when fused."""
    p, dt = problem.params, numpy_dtype(problem.dtype)
    shape = (p["rows"], p["hidden"])
    if zeros:
        x, weight = np.zeros(shape, dt), np.zeros(p["hidden"], dt)
        residual = np.zeros(shape, dt) if p["residual"] else None
    else:
        x = rng.standard_normal(shape).astype(dt)
        weight = (1.0 + 0.1 * rng.standard_normal(p["hidden"])).astype(dt)
        residual = rng.standard_normal(shape).astype(dt) if p["residual"] else None
    return (x, weight), dict(eps=1e-5, residual=residual)


def _problem(model: str, phase: str, rows: int, hidden: int, residual: bool, dtype: str) -> Problem:
    """A problem named like the others: "<model>/<phase>/rms_norm/r<rows>-h<H>[-residual]" ("smoke/rms_norm/...")."""
    prefix = "smoke" if phase == "smoke" else f"{model}/{phase}"
    label = f"r{rows}-h{hidden}{'-residual' if residual else ''}"
    return Problem(OP, f"{prefix}/rms_norm/{label}", phase, dict(rows=rows, hidden=hidden, residual=residual), dtype,
                   rows, model)


def smoke_problems(dtype: str) -> list[Problem]:
    """Odd H alone; two row tiles (130 rows) with the residual."""
    return [_problem("smoke", "smoke", 5, 67, False, dtype), _problem("smoke", "smoke", 130, 256, True, dtype)]


def model_problems(model, phase: str, grid: dict, quant, dtype: str) -> list[Problem]:
    """rows = every decode batch, or every prefill length; with and without the fused residual."""
    sizes = grid["batches"] if phase == "decode" else grid["prefill"]
    return [_problem(model.name, phase, rows, model.hidden, residual, dtype) for rows in sizes
            for residual in (False, True)]


def _series(problem: dict) -> tuple[tuple, str]:
    residual = bool(problem.get("residual"))
    return (residual,), "rms_norm + residual" if residual else "rms_norm"


# --- GPU bench ----------------------------------------------------------------------------------------------------


def rms_norm_torch(x, weight, *, eps, residual=None, dtype):
    """The reference's RMSNorm in torch `dtype` (float64 = the truth on the GPU; the activation dtype = the naive
    run: h, rstd and products rounded to it, the sum of squares in fp32), in `stacked` form (a torch tensor)."""
    import torch  # optional heavy dependency: only the GPU bench calls this

    acc = torch.float64 if dtype == torch.float64 else torch.float32
    h = x.to(dtype) if residual is None else (x.to(dtype).to(acc) + residual.to(dtype).to(acc)).to(dtype)
    rstd = torch.rsqrt(h.to(acc).pow(2).mean(-1, keepdim=True) + eps).to(dtype)
    y = ((h.to(acc) * rstd.to(acc)).to(dtype).to(acc) * weight.to(dtype).to(acc)).to(dtype)
    return y if residual is None else torch.stack([y, h])


def bench(problem: Problem, device, cache: dict):
    """(cases, truth) of the GPU bench: Triton and `torch.nn.functional.rms_norm` (after `x + residual` when fused)."""
    import torch  # optional heavy dependency: only the GPU bench calls this

    triton_rms_norm = _backends.load(OP, "triton")[0]
    (x, weight), opts = make_inputs(problem, np.random.default_rng(0), False)
    x, weight = to_torch(x, device=device), to_torch(weight, device=device)
    residual = None if opts["residual"] is None else to_torch(opts["residual"], device=device)
    eps, shape = opts["eps"], (x.shape[-1],)

    def torch_norm():
        h = x if residual is None else x + residual
        return torch.nn.functional.rms_norm(h, shape, weight, eps)

    cases = [("triton", lambda: triton_rms_norm(x, weight, eps=eps, residual=residual)),
             ("torch F.rms_norm" + (" (after x + residual)" if residual is not None else ""), torch_norm)]

    def truth():
        return tuple(rms_norm_torch(x, weight, eps=eps, residual=residual, dtype=d) for d in (torch.float64, x.dtype))

    return cases, truth


def _torch_call(x, weight, **options) -> list:
    """The torch op returns a list: [y], or [y, h] with a residual (a schema has one result type)."""
    out = rms_norm(x, weight, **options)
    return list(out) if isinstance(out, tuple) else [out]


def _fake(x, weight, *, residual=None, **options) -> list:
    """torch.compile's stand-in: [y] or [y, h], x's shape, dtype and device."""
    return [x.new_empty(x.shape) for _ in range(1 if residual is None else 2)]


TORCH = TorchOp(
    schema="(Tensor x, Tensor weight, *, float eps=1e-06, Tensor? residual=None, str backend='auto', "
           "str? target=None) -> Tensor[]",
    fake=_fake,
    call=_torch_call,
)


OP = Op(
    name="rms_norm",
    order=50,
    api=rms_norm,
    reference=reference.rms_norm,
    run_reference=_run_reference,
    backends={"nki": Launcher("nkilab.kernels.nki.launch_rms_norm", "rms_norm"),
              "triton": Launcher("nkilab.kernels.triton.rms_norm", "rms_norm")},
    spec=spec,
    flops=flops,
    hbm_bytes=hbm_bytes,
    make_inputs=make_inputs,
    smoke_problems=smoke_problems,
    model_problems=model_problems,
    plot=Plot(size="rows", series=_series),
    check=Check(output=stacked, reference=stacked_reference),
    bench=bench,
    torch=TORCH,
)
