"""silu_mul: SwiGLU's gate, silu(a) * b for gate_up = [a | b] along the last axis — the op family, declared once
(public function, rules, reference, workload, check, plot axes, GPU-bench baselines).

Per rank, a Llama/Qwen/Mistral MLP multiplies the fused gate_up projection's two halves once per layer: rows = the
decode batch or the prefill length, I = the rank's share of the MLP width (tensor parallelism splits
intermediate_size; `ModelShape.projections()["gate_up"]` is [hidden, 2I]).
"""

from __future__ import annotations

import numpy as np

from nkilab import reference
from nkilab.kernels import _backends, _checks
from nkilab.kernels._adapter import dtype_name, numpy_dtype, to_torch
from nkilab.kernels.ops._op import Launcher, Op, Plot, TorchOp
from nkilab.kernels.ops._problem import Problem
from nkilab.reference.dtypes import itemsize


def silu_mul(gate_up, *, backend="auto", target=None):
    """out = silu(a) * b with a = gate_up[..., :I], b = gate_up[..., I:] (vLLM's SiluAndMul).

    Dimensions: [..., 2I] -> [..., I]: leading dims are rows (flattened to [N, 2I] for the backends).

    Args:
        gate_up: [..., 2I] float16|bfloat16|float32|float64 (NumPy or torch), the last axis even and >= 2.
        backend: "reference" | "nki" | "triton" | "auto" (see nkilab.kernels.api).
        target: Neuron target of the NKI backend ("inf2" | "trn1" | "trn2" | "trn3"); None = its default.

    Returns:
        out: [..., I], gate_up's dtype and kind. silu (a * sigmoid(a)) and the product in fp32, one rounding.

    Raises:
        TypeError / ValueError: naming the argument, before any work (kind, dtype, shape, backend).

    Example:
        >>> import numpy as np
        >>> silu_mul(np.array([[0.0, 1.0, 2.0, 3.0]]), backend="reference").round(4).tolist()
        [[0.0, 2.1932]]
    """
    check(gate_up)
    width = int(gate_up.shape[-1])
    rows = gate_up.reshape(-1, width)
    problem = dict(dtype=dtype_name(gate_up), intermediate=width // 2, empty=_backends.empty(rows))
    name, impl = _backends.choose(OP, backend, problem, target=target)
    out = impl(_backends.to_backend(name, rows))
    return _backends.back(out, gate_up).reshape(*gate_up.shape[:-1], width // 2)


def check(gate_up) -> None:
    """Validate silu_mul's input: one array, float dtype, at least 1-D, an even last axis >= 2."""
    _checks.arrays(gate_up=gate_up)
    if gate_up.ndim < 1:
        raise ValueError(f"gate_up: must be at least 1-D [..., 2I], got shape {tuple(gate_up.shape)}")
    _checks.float_dtype("gate_up", gate_up)
    width = gate_up.shape[-1]
    if width < 2 or width % 2:
        raise ValueError(f"gate_up: the last axis must be even and >= 2 ([a | b], 2I), got {width} in shape "
                         f"{tuple(gate_up.shape)}")


def _run_reference(gate_up):
    return reference.silu_mul(gate_up).astype(gate_up.dtype)


# --- workload -----------------------------------------------------------------------------------------------------


def spec(problem: Problem) -> dict:
    return dict(dtype=problem.dtype, intermediate=problem.params["intermediate"])


def flops(problem: Problem) -> float:
    """Per output element: silu (negate, exp, add, divide, multiply: 5) and the product (1)."""
    p = problem.params
    return 6.0 * p["rows"] * p["intermediate"]


def hbm_bytes(problem: Problem) -> float:
    """gate_up read, out written: 3 rows x I elements."""
    p = problem.params
    return itemsize(problem.dtype) * 3 * p["rows"] * p["intermediate"]


def make_inputs(problem: Problem, rng: np.random.Generator, zeros: bool):
    """(gate_up [rows, 2I],), standard normal (gate pre-activations around 0, where silu bends)."""
    p, dt = problem.params, numpy_dtype(problem.dtype)
    shape = (p["rows"], 2 * p["intermediate"])
    return ((np.zeros(shape, dt) if zeros else rng.standard_normal(shape).astype(dt)),), {}


def _problem(model: str, phase: str, rows: int, inter: int, dtype: str) -> Problem:
    """A problem named like the others: "<model>/<phase>/silu_mul/r<rows>-i<I>" ("smoke/silu_mul/...")."""
    prefix = "smoke" if phase == "smoke" else f"{model}/{phase}"
    return Problem(OP, f"{prefix}/silu_mul/r{rows}-i{inter}", phase, dict(rows=rows, intermediate=inter), dtype,
                   rows, model)


def smoke_problems(dtype: str) -> list[Problem]:
    """Odd I alone (one piece per token); 130 rows (two tiles) of an I cut into pieces."""
    return [_problem("smoke", "smoke", 5, 67, dtype), _problem("smoke", "smoke", 130, 768, dtype)]


def model_problems(model, phase: str, grid: dict, quant, dtype: str) -> list[Problem]:
    """rows = every decode batch, or every prefill length; I = the rank's half of the gate_up projection. A
    composer asks for one layer's call with grid={"batches": (B,)} (decode) or {"prefill": (S,)}."""
    sizes = grid["batches"] if phase == "decode" else grid["prefill"]
    inter = model.projections()["gate_up"][1] // 2
    return [_problem(model.name, phase, rows, inter, dtype) for rows in sizes]


# --- GPU bench ----------------------------------------------------------------------------------------------------


def silu_mul_torch(gate_up, *, dtype):
    """The reference's silu_mul in torch `dtype` (float64 = the truth on the GPU; the activation dtype = the naive
    run: silu in fp32 rounded to it, then the product in fp32 rounded to it)."""
    import torch  # optional heavy dependency: only the GPU bench calls this

    acc = torch.float64 if dtype == torch.float64 else torch.float32
    a, b = gate_up.to(dtype).to(acc).chunk(2, dim=-1)
    return (torch.nn.functional.silu(a).to(dtype).to(acc) * b).to(dtype)


def bench(problem: Problem, device, cache: dict):
    """(cases, truth) of the GPU bench: Triton and torch's `F.silu(a) * b` (vLLM's SiluAndMul forward_native)."""
    import torch  # optional heavy dependency: only the GPU bench calls this

    triton_silu_mul = _backends.load(OP, "triton")[0]
    (gate_up,), _ = make_inputs(problem, np.random.default_rng(0), False)
    gate_up = to_torch(gate_up, device=device)
    half = gate_up.shape[-1] // 2

    def torch_silu_mul():
        return torch.nn.functional.silu(gate_up[..., :half]) * gate_up[..., half:]

    cases = [("triton", lambda: triton_silu_mul(gate_up)), ("torch F.silu(a) * b", torch_silu_mul)]

    def truth():
        return tuple(silu_mul_torch(gate_up, dtype=d) for d in (torch.float64, gate_up.dtype))

    return cases, truth


# --- torch.ops.nkilab.silu_mul ---------------------------------------------------------------------------------------


def _fake(gate_up, **options):
    """torch.compile's stand-in: [..., I] of gate_up's dtype and device."""
    return gate_up.new_empty((*gate_up.shape[:-1], gate_up.shape[-1] // 2))


TORCH = TorchOp(schema="(Tensor gate_up, *, str backend='auto', str? target=None) -> Tensor", fake=_fake)


OP = Op(
    name="silu_mul",
    order=70,
    api=silu_mul,
    reference=reference.silu_mul,
    run_reference=_run_reference,
    backends={"nki": Launcher("nkilab.kernels.nki.launch_silu_mul", "silu_mul"),
              "triton": Launcher("nkilab.kernels.triton.silu_mul", "silu_mul")},
    spec=spec,
    flops=flops,
    hbm_bytes=hbm_bytes,
    make_inputs=make_inputs,
    smoke_problems=smoke_problems,
    model_problems=model_problems,
    plot=Plot(size="rows"),
    bench=bench,
    torch=TORCH,
)
