"""qmatmul: y[M, N] = x[M, K] @ W[K, N] with W a quantized weight — the op family, declared once.

Public function, argument rules, the backend problem dict, the float64 reference, the workload (smoke and real-model
problems, FLOP/byte formulas, inputs), the check rule, the plot axes and the GPU bench's torch baselines.
Per rank, a decoder layer has four projections (`ModelShape.projections()`: QKV, O, gate_up, down), each a qmatmul
at M = decode batch or prefill length.
"""

from __future__ import annotations

import numpy as np

from nkilab import reference
from nkilab.kernels import _backends, _checks
from nkilab.kernels._adapter import FLOAT_DTYPE_NAMES, dtype_name, numpy_dtype, to_numpy, to_torch
from nkilab.kernels.ops import _weights
from nkilab.kernels.ops._op import Check, Launcher, Op, Plot, TorchOp
from nkilab.kernels.ops._problem import DEFAULT_QUANT, Problem, Quant
from nkilab.kernels.ops._weights import PreparedWeight
from nkilab.reference.dtypes import itemsize
from nkilab.reference.quant import (
    FP8_DTYPES,
    FP8_SCHEMES,
    SCHEMES,
    QuantizedActivation,
    QuantizedWeight,
    check_group_size,
    check_int4_k,
    quantize_activation,
    quantize_weight,
)

# dtype of QuantizedWeight.data / QuantizedActivation.data per scheme: a kernel reads the bits as the scheme says,
# so data of another format (e4m3fn bits under "fp8_e4m3") would be misread without an error.
DATA_DTYPE_NAMES = {"int8": "int8", "int4": "uint8", **{s: np.dtype(t).name for s, t in FP8_DTYPES.items()}}
WEIGHT_BITS = {"int8": 8, "int4": 4, "fp8_e4m3": 8, "fp8_e4m3fn": 8}
# GPU bench: every weight scheme on one wide-N and one long-K GEMM (Llama-3.1-8B 4096→6144 and 14336→4096)
BENCH_QUANTS = (Quant("int8"), Quant("int4", 128), Quant("int4", 128, symmetric=False), Quant("fp8_e4m3fn"),
                Quant("fp8_e4m3fn", w8a8=True))
BENCH_PROJECTIONS = ("qkv", "down")


def qmatmul(x, qw, *, out_dtype=None, backend="auto", target=None):
    """y[M, N] = x[M, K] @ W[K, N], W the dequantized `qw`.

    Args:
        x: [M, K] float16|bfloat16|float32|float64 (NumPy or torch), or a QuantizedActivation (W8A8; qw must
            then be fp8 per channel).
        qw: shape (K, N): a QuantizedWeight (nkilab.reference.quant.quantize_weight; from a torch nn.Linear's [N, K]
            weight: nkilab.reference.quant_import.quantize_linear; GPTQ / AWQ checkpoints: from_gptq / from_awq), a
            PreparedWeight (`prepare_weight`: validated and converted once for a backend), or a backend's own
            prepared weight (nkilab.kernels.triton.prepare_weight).
        out_dtype: result dtype (NumPy, ml_dtypes, torch dtype or name); None = x's dtype (float32 for W8A8).
        backend: "reference" | "nki" | "triton" | "auto" (see nkilab.kernels.api).
        target: Neuron target of the NKI backend ("inf2" | "trn1" | "trn2" | "trn3"); None = its default.

    Returns:
        y: [M, N] out_dtype, NumPy or torch like x (NumPy for a QuantizedActivation).

    Precision: the reference computes in float64. The NKI kernel rounds x to bfloat16 before TensorE (fp32
    activations included: TensorE multiplies bf16 at full rate and fp32 at a quarter of it, so the kernel keeps the
    device's bf16 moving operand); quantized weights are exact in bf16 and sums are fp32. So for fp32 x expect an
    error of about 2^-9 |x| |W| per product (measured: up to ~0.1 on outputs of magnitude ~10 at K = 256), not
    fp32 rounding; use
    backend="reference" or "triton" (fp32 dots) where that matters. Triton computes in x's dtype with fp32 sums.

    Raises:
        TypeError: qw not a (prepared) QuantizedWeight, x not an array, non-float dtypes.
        ValueError: K mismatch, inconsistent qw, unknown backend, unsupported scheme for an explicit backend.

    Example:
        >>> import numpy as np
        >>> from nkilab.reference.quant import quantize_weight
        >>> qmatmul(np.ones((1, 2), np.float32), quantize_weight(np.full((2, 1), 2.0), "int8"), backend="reference")
        array([[4.]], dtype=float32)
    """
    prepared = _weights.as_prepared(OP, qw)
    weight = qw if prepared is None else prepared.source
    # A PreparedWeight was validated by `prepare_weight`; a backend's own prepared object (e.g. from
    # nkilab.kernels.triton.prepare_weight) never was, so its source is checked here like a QuantizedWeight.
    out_name = check(x, weight, out_dtype, validated=isinstance(qw, PreparedWeight))
    quantized_x = isinstance(x, QuantizedActivation)
    xdata = x.data if quantized_x else x
    problem = _problem_dict(Quant(weight.scheme, weight.group_size, weight.symmetric, quantized_x),
                            int(xdata.shape[0]), int(weight.shape[0]), int(weight.shape[1]), dtype_name(xdata))
    name, impl = _backends.choose(OP, backend, dict(problem, empty=_backends.empty(xdata)), target=target)
    w = weight if prepared is None else prepared.for_backend(name)
    y = impl(x if quantized_x else _backends.to_backend(name, x), w, out_dtype=_backends.out_dtype_for(name, out_name))
    return _backends.back(y, None if quantized_x else x)


def prepare_weight(qw, backend="auto", device=None) -> PreparedWeight:
    """`qw` validated once and converted into the form `backend`'s kernel reads, for `qmatmul(x, prepared, ...)`.

    Args:
        qw: QuantizedWeight (K, N).
        backend: "reference" | "nki" | "triton" | "auto" (the backend "auto" would use here). The prepared form
            serves that backend; any other backend gets the source weight (converted per call, as without
            preparing).
        device: torch device for the Triton form (None = its kernel device); NumPy backends take none.

    Returns:
        PreparedWeight(source, backend, prepared): Triton: torch tensors on the device (fp8 as raw bits); reference
        and NKI: the validated QuantizedWeight itself (their kernels read the NumPy arrays as they are).

    Example:
        >>> import numpy as np
        >>> from nkilab.reference.quant import quantize_weight
        >>> pw = prepare_weight(quantize_weight(np.full((2, 1), 2.0), "int8"), backend="reference")
        >>> qmatmul(np.ones((1, 2), np.float32), pw, backend="reference")
        array([[4.]], dtype=float32)
    """
    if not isinstance(qw, QuantizedWeight):
        raise TypeError(f"qw: must be a QuantizedWeight from nkilab.reference.quant.quantize_weight, "
                        f"got {type(qw).__name__}")
    _check_quantized_weight(qw)
    return _weights.prepare(OP, qw, backend, device)


def _problem_dict(quant: Quant, m: int, k: int, n: int, dtype: str) -> dict:
    """The backend problem dict (`unsupported(**problem)` keys, `empty` aside)."""
    return dict(scheme=quant.scheme, group_size=quant.group_size, symmetric=quant.symmetric, w8a8=quant.w8a8,
                m=m, k=k, n=n, dtype=dtype)


# --- argument rules -----------------------------------------------------------------------------------------------


def check(x, qw, out_dtype, *, validated: bool = False) -> str:
    """Validate qmatmul inputs; returns the resolved output dtype name (None -> x's dtype, float32 for W8A8).
    `validated`: qw came from a prepared weight, whose fields were checked when it was prepared."""
    if not isinstance(qw, QuantizedWeight):
        raise TypeError(f"qw: must be a QuantizedWeight (nkilab.reference.quant.quantize_weight) or a prepared weight "
                        f"(nkilab.kernels.prepare_weight), got {type(qw).__name__}")
    if not validated:
        _check_quantized_weight(qw)
    k, n = qw.shape
    if isinstance(x, QuantizedActivation):
        if qw.scheme not in FP8_SCHEMES or qw.group_size is not None:
            raise ValueError(f"qw: W8A8 (x is a QuantizedActivation) needs fp8 per-channel weights, got {qw!r}")
        _check_quantized_activation(x)
        xdata = x.data
        default = "float32"
    else:
        _checks.arrays(x=x)
        _checks.ndim("x", x, 2, "[M, K]")
        default = _checks.float_dtype("x", x)
        xdata = x
    if xdata.shape[1] != k:
        raise ValueError(f"x: K={xdata.shape[1]} must equal qw.shape[0]={k} (x is [M, K], qw is [K, N])")
    if out_dtype is None:
        return default
    try:
        name = dtype_name(out_dtype)
    except TypeError as e:
        raise TypeError(f"out_dtype: not a dtype: {out_dtype!r}") from e
    if name not in FLOAT_DTYPE_NAMES:
        raise TypeError(f"out_dtype: must be one of {FLOAT_DTYPE_NAMES}, got {name}")
    return name


def _check_quantized_weight(qw: QuantizedWeight) -> None:
    """The fields of a QuantizedWeight agree with each other (it may have been built by hand)."""
    if qw.scheme not in SCHEMES:
        raise ValueError(f"qw.scheme: must be one of {SCHEMES}, got {qw.scheme!r}")
    for field in ("data", "scales", "zeros"):
        value = getattr(qw, field)
        if not isinstance(value, np.ndarray) and (field != "zeros" or value is not None):
            raise TypeError(f"qw.{field}: must be a NumPy array (as quantize_weight makes it), got {type(value).__name__}")
    shape = qw.shape
    if (not isinstance(shape, tuple) or len(shape) != 2
            or any(isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)) for d in shape)):
        raise TypeError(f"qw.shape: must be a tuple (K, N) of two ints, got {shape!r}")
    k, n = shape
    if k < 1 or n < 1:
        raise ValueError(f"qw.shape: K and N must be >= 1, got {qw.shape}")
    check_group_size(qw.group_size, k, "qw.group_size")
    check_int4_k(qw.scheme, k, "qw.shape")
    groups = 1 if qw.group_size is None else k // qw.group_size
    data_shape = (k // 2, n) if qw.scheme == "int4" else (k, n)
    if tuple(qw.data.shape) != data_shape:
        raise ValueError(f"qw.data: shape must be {data_shape} for {qw.scheme} with shape {qw.shape}, got {qw.data.shape}")
    data_dtype = DATA_DTYPE_NAMES[qw.scheme]
    if qw.data.dtype.name != data_dtype:
        raise TypeError(f"qw.data: dtype must be {data_dtype} for scheme {qw.scheme!r}, got {qw.data.dtype.name}")
    if tuple(qw.scales.shape) != (groups, n):
        raise ValueError(f"qw.scales: shape must be {(groups, n)}, got {qw.scales.shape}")
    if qw.scales.dtype != np.float32:
        raise TypeError(f"qw.scales: dtype must be float32, got {qw.scales.dtype}")
    if not np.all(np.isfinite(qw.scales)):
        raise ValueError("qw.scales: must be finite (no NaN/inf); re-quantize with quantize_weight")
    if qw.zeros is not None and (qw.scheme != "int4" or tuple(qw.zeros.shape) != (groups, n)):
        raise ValueError(f"qw.zeros: must be None or uint8 {(groups, n)} for int4 asymmetric, got {qw.zeros.shape}")
    if (qw.zeros is None) != qw.symmetric:
        raise ValueError(f"qw.zeros: symmetric={qw.symmetric} requires zeros {'None' if qw.symmetric else 'present'}")
    if qw.zeros is not None and (qw.zeros.dtype != np.uint8 or qw.zeros.max(initial=0) > 15):
        raise ValueError(
            f"qw.zeros: must be uint8 zero points in 0..15, got {qw.zeros.dtype} with max {qw.zeros.max(initial=0)}"
        )


def _check_quantized_activation(x: QuantizedActivation) -> None:
    """The fields of a QuantizedActivation agree with each other (it may have been built by hand)."""
    if x.scheme not in FP8_SCHEMES:
        raise ValueError(f"x.scheme: must be one of {FP8_SCHEMES}, got {x.scheme!r}")
    if not isinstance(x.data, np.ndarray) or not isinstance(x.scales, np.ndarray):
        raise TypeError("x.data, x.scales: must be NumPy arrays (as quantize_activation makes them)")
    data_dtype = DATA_DTYPE_NAMES[x.scheme]
    if x.data.ndim != 2 or x.data.dtype.name != data_dtype:
        raise ValueError(f"x.data: must be 2-D [M, K] {data_dtype} for {x.scheme!r}, got {x.data.dtype.name} {x.data.shape}")
    m = x.data.shape[0]
    if tuple(x.scales.shape) != (m, 1) or x.scales.dtype != np.float32:
        raise ValueError(f"x.scales: must be float32 [M, 1] = {(m, 1)}, got {x.scales.dtype} {x.scales.shape}")
    if not np.all(np.isfinite(x.scales)):
        raise ValueError("x.scales: must be finite (no NaN/inf); re-quantize with quantize_activation")


def _run_reference(x, qw, *, out_dtype):
    return reference.qmatmul(x, qw, out_dtype=out_dtype)


def sum_magnitude(x, qw, **_options) -> float:
    """max over m, n of sum_k |x[m, k]| |W[k, n]| (float64, non-finite x elements as 0): the magnitude the K sums
    round at, which the check's floor is taken at (`Check.magnitude`; why: `nkilab.harness.checks`)."""
    xd = reference.dequantize_activation(x) if isinstance(x, QuantizedActivation) else np.asarray(x, np.float64)
    xd = np.where(np.isfinite(xd), np.abs(xd), 0.0)
    return float(np.max(xd @ np.abs(reference.dequantize_weight(qw)), initial=0.0))


# --- workload -----------------------------------------------------------------------------------------------------


def spec(problem: Problem) -> dict:
    p = problem.params
    return _problem_dict(problem.quant or DEFAULT_QUANT, p["m"], p["k"], p["n"], problem.dtype)


def flops(problem: Problem) -> float:
    """2·M·K·N."""
    p = problem.params
    return 2.0 * p["m"] * p["k"] * p["n"]


def hbm_bytes(problem: Problem) -> float:
    """The packed weights and their float32 scales, x read and y written once."""
    p, q = problem.params, problem.quant or DEFAULT_QUANT
    groups = p["k"] // q.group_size if q.group_size else 1
    weights = p["k"] * p["n"] * WEIGHT_BITS[q.scheme] / 8 + groups * p["n"] * 4
    return weights + (p["m"] * p["k"] + p["m"] * p["n"]) * itemsize(problem.dtype)


def make_inputs(problem: Problem, rng: np.random.Generator, zeros: bool):
    """(x [M, K], qw) with qw = quantize_weight of a normal(0, 0.05) [K, N] (W8A8: x a QuantizedActivation)."""
    p, q = problem.params, problem.quant or DEFAULT_QUANT
    dt = numpy_dtype(problem.dtype)
    w = np.zeros((p["k"], p["n"])) if zeros else rng.standard_normal((p["k"], p["n"])) * 0.05
    qw = quantize_weight(w, q.scheme, q.group_size, q.symmetric)
    x = np.zeros((p["m"], p["k"]), dt) if zeros else rng.standard_normal((p["m"], p["k"])).astype(dt)
    if q.w8a8:
        return (quantize_activation(x.astype(np.float32), q.scheme), qw), {}
    return (x, qw), {}


def smoke_problems(dtype: str) -> list[Problem]:
    """int8 per channel, int4 g64 asymmetric, fp8 at odd M and N."""
    return [
        Problem(OP, "smoke/qmatmul/int8", "smoke", dict(m=5, k=256, n=96), dtype, 5, "smoke", Quant("int8")),
        Problem(OP, "smoke/qmatmul/int4-g64-asym", "smoke", dict(m=3, k=256, n=64), dtype, 3, "smoke",
                Quant("int4", 64, False)),
        Problem(OP, "smoke/qmatmul/fp8", "smoke", dict(m=4, k=128, n=80), dtype, 4, "smoke", Quant("fp8_e4m3")),
    ]


def model_problems(model, phase: str, grid: dict, quant: Quant, dtype: str) -> list[Problem]:
    """Each projection at M = every decode batch, or every prefill GEMM length (`grid["prefill_gemm"]`)."""
    sizes = grid["batches"] if phase == "decode" else grid["prefill_gemm"]
    return [Problem(OP, f"{model.name}/{phase}/qmatmul/{proj}-m{rows}", phase, dict(m=rows, k=k, n=n, projection=proj),
                    dtype, rows, model.name, quant)
            for proj, (k, n) in model.projections().items() for rows in sizes]


def _series(problem: dict) -> tuple[tuple, str]:
    projection = problem.get("projection", "")
    return (projection,), f"qmatmul {projection}"


def bench_variants(problem: Problem) -> list[Problem]:
    """The GPU bench runs every scheme of BENCH_QUANTS on the BENCH_PROJECTIONS, and no other projection."""
    if problem.params.get("projection") not in BENCH_PROJECTIONS:
        return []
    return [Problem(OP, f"{problem.name}/{q.label}", problem.phase, problem.params, problem.dtype, problem.tokens,
                    problem.model, q) for q in BENCH_QUANTS]


# --- GPU bench: torch baselines and the float64 truth on the device -------------------------------------------------


def dequantize_torch(prepared, dtype):
    """W[K, N] = (q − z) · s in torch `dtype` from a Triton PreparedWeight (the baseline's dequantization, every call);
    equal to nkilab.reference.quant.dequantize_weight in float64."""
    import torch  # optional heavy dependency: only the GPU bench calls this

    src = prepared.source
    k, n = src.shape
    data = prepared.data
    if src.scheme == "int4":
        lo = (data & 0xF).to(torch.int16)
        hi = (data >> 4).to(torch.int16)
        if src.symmetric:
            lo, hi = torch.where(lo >= 8, lo - 16, lo), torch.where(hi >= 8, hi - 16, hi)
        q = torch.stack((lo, hi), dim=1).reshape(k, n)  # row 2i = low nibble of byte row i, 2i + 1 = high
    elif src.scheme.startswith("fp8"):
        q = data.view(torch.float8_e4m3fn)  # e4m3 (max 240) shares every e4m3fn encoding up to 240
    else:
        q = data
    q = q.to(dtype)
    rows = src.group_size or k
    if prepared.zeros is not None:
        q = q - prepared.zeros.to(dtype).repeat_interleave(rows, dim=0)
    return q * prepared.scales.to(dtype).repeat_interleave(rows, dim=0)


def bench(problem: Problem, device, cache: dict):
    """(cases, truth) of the GPU bench: Triton, dequantize-then-matmul every call, a matmul on pre-dequantized
    weights (W8A8: `torch._scaled_mm` with per-token × per-channel scales). Prepared weights are cached per
    (K, N, scheme) in `cache` (the bench's ten weights take < 0.5 GB of GPU memory; quantizing them is the slow part)."""
    import torch  # optional heavy dependency: only the GPU bench calls this

    tb = _backends.backend_module(OP, "triton")
    p, quant = problem.params, problem.quant
    key = (p["k"], p["n"], quant.scheme, quant.group_size, quant.symmetric)
    if key not in cache:
        w = np.random.default_rng(0).standard_normal((p["k"], p["n"]), dtype=np.float32) * 0.05
        cache[key] = tb.prepare_weight(quantize_weight(w, quant.scheme, quant.group_size, quant.symmetric), device)
    pw = cache[key]
    dtype = getattr(torch, problem.dtype)
    x = torch.randn(p["m"], p["k"], device=device, dtype=torch.float32)
    w_pre = dequantize_torch(pw, dtype)
    if quant.w8a8:
        xa = tb.prepare_activation(quantize_activation(x.cpu().numpy(), quant.scheme), device)
        x_fp8 = xa.data.view(torch.float8_e4m3fn)
        x_deq = x_fp8.to(torch.float32) * xa.scales[:, None]
        x_truth = x_fp8.double() * xa.scales.double()[:, None]
        w_fp8 = pw.data.view(torch.float8_e4m3fn).t().contiguous().t()  # _scaled_mm wants B column-major
        cases = [("triton", lambda: tb.qmatmul(xa, pw, out_dtype=dtype)),
                 ("torch dequant+matmul", lambda: x_deq.to(dtype) @ dequantize_torch(pw, dtype)),
                 ("torch._scaled_mm", lambda: torch._scaled_mm(x_fp8, w_fp8, scale_a=xa.scales[:, None],
                                                               scale_b=pw.scales, out_dtype=dtype))]
    else:
        x_truth = x.to(dtype)
        cases = [("triton", lambda: tb.qmatmul(x_truth, pw, out_dtype=dtype)),
                 ("torch dequant+matmul", lambda: x_truth @ dequantize_torch(pw, dtype)),
                 ("torch matmul (pre-dequantized)", lambda: x_truth @ w_pre)]

    def truth():
        ref64 = x_truth.double() @ dequantize_torch(pw, torch.float64)
        return ref64, x_truth.to(dtype) @ w_pre  # the naive run: dequantized operands in the working dtype

    return cases, truth


# --- torch.ops.nkilab.qmatmul: the weight as tensors -----------------------------------------------------------------


def torch_weight_args(qw: QuantizedWeight, device=None) -> tuple:
    """The weight arguments of `torch.ops.nkilab.qmatmul` for `qw`: (w_data, w_scales, w_zeros, scheme, group_size,
    symmetric), the arrays as torch tensors on `device` (default CPU; fp8 data as its raw uint8 bits, since torch has
    no IEEE-like float8_e4m3), e.g. registered as an nn.Module's buffers."""
    if not isinstance(qw, QuantizedWeight):
        raise TypeError(f"qw: must be a QuantizedWeight, got {type(qw).__name__}")
    _check_quantized_weight(qw)
    data = qw.data.view(np.uint8) if qw.scheme in FP8_SCHEMES else qw.data
    zeros = None if qw.zeros is None else to_torch(np.array(qw.zeros), device=device)
    return (to_torch(np.array(data), device=device), to_torch(np.array(qw.scales), device=device), zeros, qw.scheme,
            qw.group_size, qw.symmetric)


def weight_from_tensors(w_data, w_scales, w_zeros, scheme: str, group_size, symmetric: bool) -> QuantizedWeight:
    """The QuantizedWeight that `torch_weight_args` made tensors of (NumPy views of CPU tensors; a device tensor is
    copied to the host per call, so on a GPU prefer `qmatmul(x, prepare_weight(qw, backend="triton"))`)."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme: must be one of {SCHEMES}, got {scheme!r}")
    data = to_numpy(w_data)
    if scheme in FP8_SCHEMES:
        if data.dtype != np.uint8:
            raise TypeError(f"w_data: {scheme} weights travel as their uint8 bits, got {data.dtype}")
        data = data.view(FP8_DTYPES[scheme])
    rows, n = data.shape if data.ndim == 2 else (0, 0)
    zeros = None if w_zeros is None else to_numpy(w_zeros)
    return QuantizedWeight(data, to_numpy(w_scales), zeros, scheme, group_size,
                           (2 * rows if scheme == "int4" else rows, n), symmetric)


def _torch_call(x, w_data, w_scales, w_zeros, scheme, group_size, symmetric, **options):
    return qmatmul(x, weight_from_tensors(w_data, w_scales, w_zeros, scheme, group_size, symmetric), **options)


def _fake(x, w_data, w_scales, w_zeros, scheme, group_size, symmetric, *, out_dtype=None, **options):
    """torch.compile's stand-in: [M, N] in out_dtype (x's dtype by default), on x's device."""
    return x.new_empty((x.shape[0], w_data.shape[1]), dtype=out_dtype or x.dtype)


TORCH = TorchOp(
    schema="(Tensor x, Tensor w_data, Tensor w_scales, Tensor? w_zeros, str scheme, int? group_size, "
           "bool symmetric, *, ScalarType? out_dtype=None, str backend='auto', str? target=None) -> Tensor",
    fake=_fake,
    call=_torch_call,
)


OP = Op(
    name="qmatmul",
    order=10,
    api=qmatmul,
    reference=reference.qmatmul,
    run_reference=_run_reference,
    check=Check(magnitude=sum_magnitude),
    backends={"nki": Launcher("nkilab.kernels.nki.launch_qmatmul", "qmatmul"),
              "triton": Launcher("nkilab.kernels.triton.qmatmul", "qmatmul")},
    spec=spec,
    flops=flops,
    hbm_bytes=hbm_bytes,
    make_inputs=make_inputs,
    smoke_problems=smoke_problems,
    model_problems=model_problems,
    plot=Plot(size="m", series=_series),
    bench=bench,
    bench_variants=bench_variants,
    torch=TORCH,
)
