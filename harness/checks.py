"""The one comparator: a kernel's output against the float64 reference, FlashAttention style.

Rule: max|out - ref64| <= c * max|ref_lowprec - ref64| + floor, where ref_lowprec is the same reference computation
done naively in the kernel's working precision (the reference's `compute_dtype=`). A kernel may be up to `c` times
worse than the naive computation in its own precision, never more. NaN/inf where the reference has a finite value
(or the other way round, or infinities of opposite sign) always fail, whatever the tolerance.

Naive run, summation order (`check_against_reference`): where the reference sums (it takes `sum_order=`,
`nkilab.reference.sums`), the budget is the worse of two naive runs, NumPy's order and one running sum per output
element; the kernel passes if it is within c times either. Why: the naive error is one sample of an order-dependent
rounding error, and NumPy's order (several interleaved partial sums) can be several times luckier than an
accumulator chain's. Measured (2026-12-03) on float32 attention q [2, 109, 28, 128], k/v [2, 28, 4, 128], seed 228
(`tests/harness/test_checks.py`): NumPy's order errs 6.8e-7, the running sum 1.9e-6, the NKI kernel 2.4e-6, so
c = 2 over NumPy's order alone failed a kernel at 1.25x the running sum's error. Over 5,000 float32 draws of the
fuzz suite's attention shapes, NKI on inf2 went over NumPy's order's bound once (1.21x) and reached 0.70 of the
two-order bound at most (trn2: 0.97 and 0.70). c is unchanged.

Default floor, per output dtype: FLOOR_ULPS units in the last place of the output dtype at the reference's
magnitude, i.e. FLOOR_ULPS * eps(out dtype) * max|ref64|. Why: the kernel's output is rounded to its dtype, so even
an exact kernel is off by up to half an ulp, and the naive run can be error-free by luck (e.g. integer-valued data),
which would otherwise leave a bound of 0. For float64 outputs two ulps are too tight for a kernel that merely sums
in another order (error grows ~ n * eps), so float64 gets FLOAT64_FLOOR_REL (1e-12, covering n up to ~4500 terms).
An op whose sums may cancel (qmatmul: `Check.magnitude`) takes the floor at the largest sum of |terms| of one output
instead (`check_output`): float rounding happens at the partial sums' magnitude, not the result's, and no fixed set
of naive orders covers a single cancelled output (x [1, 128] times one int4 column, 0.0269 from |terms| summing to
7.6: 2,000 random orders err 1.3e-7 median, 7.5e-7 max; NumPy's order 8e-9, the running sum 2e-8, the Triton
kernel 2.0e-7). A tf32-rounded x still fails it (6.8e-6 against 1.8e-6). Pass `floor=` explicitly to override.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass

import ml_dtypes
import numpy as np

from nkilab.kernels._adapter import dtype_name, numpy_dtype, to_numpy
from nkilab.reference.sums import SUM_ORDERS

FLOOR_ULPS = 2.0  # two ulps of the output dtype at the reference's magnitude (see the module docstring)
FLOAT64_FLOOR_REL = 1e-12  # float64 outputs: summation-order differences, not rounding, dominate
MAX_LISTED = 5  # mismatches listed in a report


@dataclass(frozen=True)
class CheckResult:
    """Outcome of `compare`; `str(result)` is the readable report.

    Fields: passed; max_abs_err = max|out - ref64| over finite agreeing positions; max_rel_err and mean_rel_err
    relative to |ref64| (denominators clamped to eps(out dtype) * max|ref64| so near-zero references do not blow
    up); bound = c * max|ref_lowprec - ref64| + floor; worst_index = position of max_abs_err (None when empty);
    message = the report.
    """

    passed: bool
    max_abs_err: float
    max_rel_err: float
    mean_rel_err: float
    bound: float
    worst_index: tuple | None
    message: str

    def __str__(self) -> str:
        return self.message


def default_floor(out_dtype, ref64: np.ndarray) -> float:
    """`floor_at` max|ref64| over its finite values."""
    return floor_at(out_dtype, float(np.max(np.abs(ref64[np.isfinite(ref64)]), initial=0.0)))


def floor_at(out_dtype, magnitude: float) -> float:
    """FLOOR_ULPS ulps of `out_dtype` at `magnitude` (FLOAT64_FLOOR_REL relative for float64 outputs)."""
    dt = numpy_dtype(out_dtype)
    if dt == np.float64:
        return FLOAT64_FLOOR_REL * magnitude
    return FLOOR_ULPS * _eps(dt) * magnitude


def _eps(dt: np.dtype) -> float:
    """Machine epsilon of a float dtype, ml_dtypes ones (bfloat16, fp8) included."""
    return float(ml_dtypes.finfo(dt).eps)


def _relative(abs_err: np.ndarray, r: np.ndarray, finite_both: np.ndarray, dtype) -> np.ndarray:
    """abs_err / |r| where both are finite (0 elsewhere), denominators clamped to eps(dtype) * max|r|."""
    magnitude = float(np.max(np.abs(r[np.isfinite(r)]), initial=0.0))
    denom_floor = max(_eps(numpy_dtype(dtype)) * magnitude, np.finfo(np.float64).tiny)
    return abs_err / np.maximum(np.abs(np.where(finite_both, r, 0.0)), denom_floor)


def _float64(a) -> np.ndarray:
    return np.asarray(to_numpy(a)).astype(np.float64)


def compare(out, ref64, ref_lowprec, *, c: float = 2.0, floor: float | None = None) -> CheckResult:
    """Check `out` against the float64 reference with the error budget of the naive low-precision run.

    Args:
        out: kernel output, any float dtype, NumPy or torch.
        ref64: the reference in float64 (compute_dtype=float64), same shape.
        ref_lowprec: the reference in the kernel's working precision (compute_dtype=...), same shape.
        c: allowed multiple of the naive error (default 2, the FlashAttention papers' rule).
        floor: absolute slack added to the bound; None = `default_floor(out's dtype, ref64)`.

    Returns:
        CheckResult (passed, errors, bound, worst_index, message).

    Raises:
        ValueError: c not a finite number > 0, or floor not a finite number >= 0 (an infinite or NaN slack would
            pass or fail everything and say nothing about the kernel).
        TypeError: out not of a float dtype.
    """
    if not (np.isfinite(c) and c > 0):
        raise ValueError(f"c: must be a finite number > 0, got {c!r}")
    if floor is not None and not (np.isfinite(floor) and floor >= 0):
        raise ValueError(f"floor: must be None or a finite number >= 0, got {floor!r}")
    out_dtype = dtype_name(out)
    if not out_dtype.startswith(("float", "bfloat")):  # NumPy floats and the ml_dtypes ones (bfloat16, float8_*)
        raise TypeError(f"out: must have a float dtype (the kernel's output), got {out_dtype}")
    o, r, lo = _float64(out), _float64(ref64), _float64(ref_lowprec)
    if o.shape != r.shape or lo.shape != r.shape:
        msg = f"FAIL shape mismatch: out {o.shape}, ref64 {r.shape}, ref_lowprec {lo.shape}"
        return CheckResult(False, float("inf"), float("inf"), float("inf"), 0.0, None, msg)
    floor = default_floor(out_dtype, r) if floor is None else float(floor)

    # Non-finite agreement: both NaN, or the same infinity, is agreement; anything else is a failure.
    same_nonfinite = (np.isnan(o) & np.isnan(r)) | (np.isinf(o) & np.isinf(r) & (np.sign(o) == np.sign(r)))
    finite_both = np.isfinite(o) & np.isfinite(r)
    disagree = ~(same_nonfinite | finite_both)

    abs_err = np.zeros(o.shape)
    abs_err[finite_both] = np.abs(o[finite_both] - r[finite_both])
    low_ok = np.isfinite(lo) & np.isfinite(r)
    naive_err = float(np.max(np.abs(lo[low_ok] - r[low_ok]), initial=0.0))
    bound = c * naive_err + floor
    rel_err = _relative(abs_err, r, finite_both, out_dtype)

    max_abs = float(abs_err.max(initial=0.0))
    max_rel = float(rel_err.max(initial=0.0))
    mean_rel = float(rel_err[finite_both].mean()) if finite_both.any() else 0.0
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(abs_err)), abs_err.shape)) if abs_err.size else None
    passed = bool(max_abs <= bound and not disagree.any())

    lines = [
        f"{'PASS' if passed else 'FAIL'} out {out_dtype} {o.shape}: max_abs_err={max_abs:.3e} "
        f"{'<=' if max_abs <= bound else '>'} bound={bound:.3e} (c={c:g} * naive_err={naive_err:.3e} + floor={floor:.3e}); "
        f"max_rel_err={max_rel:.3e} mean_rel_err={mean_rel:.3e} worst_index={worst}"
    ]
    if disagree.any():
        idx = np.argwhere(disagree)
        lines.append(f"  {len(idx)} NaN/inf disagreements, first {min(len(idx), MAX_LISTED)}:")
        lines += [f"    {tuple(int(x) for x in i)}: out={float(o[tuple(i)])!r} ref64={float(r[tuple(i)])!r}" for i in idx[:MAX_LISTED]]
    over = abs_err > bound
    if over.any():
        idx = np.argwhere(over)
        lines.append(f"  {len(idx)} of {o.size} elements over the bound, first {min(len(idx), MAX_LISTED)}:")
        lines += [
            f"    {tuple(int(x) for x in i)}: out={o[tuple(i)]:.6g} ref64={r[tuple(i)]:.6g} err={abs_err[tuple(i)]:.3e}"
            for i in idx[:MAX_LISTED]
        ]
    return CheckResult(passed, max_abs, max_rel, mean_rel, bound, worst, "\n".join(lines))


def check_against_reference(out, reference_fn, *args, compute_dtype=None, c: float = 2.0, floor=None, **kwargs):
    """Run `reference_fn` in float64 and naively in the working precision, in each summation order it takes, and
    `compare` `out` against it: `out` passes if it is within the budget of either order's naive run (see the module
    docstring); the sequential run is made only when NumPy's order fails.

    Args:
        out: kernel output (NumPy or torch).
        reference_fn: a nkilab.reference function taking `compute_dtype=` (attention, paged_attention, qmatmul), and
            `sum_order=` where it sums.
        *args, **kwargs: the reference's arguments (NumPy; the kernel's inputs, e.g. the *quantized* weight).
        compute_dtype: working precision of the naive run; None = out's dtype.
        c, floor: as in `compare`.

    Returns:
        CheckResult: the first passing order's, else the one with the larger bound; its message names the order.
        The naive run's result is rounded to out's dtype, since the kernel's output is too.
    """
    out_np = to_numpy(out)
    working = numpy_dtype(out_np.dtype if compute_dtype is None else compute_dtype)
    ref64 = reference_fn(*args, compute_dtype=np.float64, **kwargs)
    orders = SUM_ORDERS if "sum_order" in inspect.signature(reference_fn).parameters else (None,)
    worst = None
    for order in orders:
        extra = {} if order is None else {"sum_order": order}
        ref_low = np.asarray(reference_fn(*args, compute_dtype=working, **extra, **kwargs)).astype(out_np.dtype)
        result = compare(out_np, ref64, ref_low, c=c, floor=floor)
        if order is not None:
            result = dataclasses.replace(result, message=f"{result.message}\n  naive run's sum order: {order}")
        if result.passed:
            return result
        worst = result if worst is None or result.bound > worst.bound else worst
    return worst


def check_output(op, out, args, kwargs) -> CheckResult:
    """An op's output against its float64 reference by the op's check rule (`Op.check`: `output`, `reference`,
    `naive`, `floor`); `op` is an `nkilab.kernels.ops._op.Op`, `args`/`kwargs` the NumPy inputs of the call.

    naive rule: `check_against_reference` (the naive run in the output's precision is the error budget); exact rule
    (naive=False): the float64 reference is both the truth and the budget, so only `floor` is allowed (0 = exact).
    An op with `magnitude` takes the default floor at the magnitude its sums run at (module docstring).
    """
    rule = op.check
    reference_fn = rule.reference or op.reference
    got = rule.output(out)
    floor = rule.floor
    if floor is None and rule.magnitude is not None:
        floor = floor_at(dtype_name(got), rule.magnitude(*args, **kwargs))
    if rule.naive:
        return check_against_reference(got, reference_fn, *args, floor=floor, **kwargs)
    ref64 = reference_fn(*args, compute_dtype=np.float64, **kwargs)
    return compare(got, ref64, ref64, floor=floor)


def check_truth(op, out, ref64, ref_lowprec) -> CheckResult:
    """`check_output` against a truth computed elsewhere (the GPU bench computes ref64 and the naive run in torch on
    the device), by the op's rule: `ref_lowprec` is ignored under the exact rule. One naive run, in the device's
    summation order, and the floor at max|ref64| (`Check.magnitude` needs the call's inputs): the bench runs
    bfloat16, whose rounding dwarfs what the two orders and the magnitude floor correct for in float32."""
    rule = op.check
    return compare(rule.output(out), ref64, ref_lowprec if rule.naive else ref64, floor=rule.floor)


def quantization_error(op, args, kwargs, unquantized_args, unquantized_kwargs, unquantized_dtype: str) -> dict:
    """The error of KV-cache quantization itself, apart from any kernel: the float64 reference on the quantized inputs
    (`Op.check.dequantized`, None = the op's check reference; dequantized to the unquantized output's form) against
    the float64 reference on the unquantized inputs they were quantized from.

    Args:
        op: an `nkilab.kernels.ops._op.Op`; args/kwargs: the quantized call's NumPy inputs (kwargs name
            kv_cache_dtype); unquantized_args/unquantized_kwargs: the same problem's inputs over the model-dtype cache
            ("auto"); unquantized_dtype: that cache's dtype name (the relative error's denominator floor,
            eps(dtype) * max|ref|, as in `compare`).

    Returns:
        {kv_cache_dtype, unquantized_dtype, max_abs_err, max_rel_err} over positions finite in both (NaN-filled
        unused cache slots excluded).
    """
    reference_fn = op.check.reference or op.reference
    quantized = _float64((op.check.dequantized or reference_fn)(*args, compute_dtype=np.float64, **kwargs))
    exact = _float64(reference_fn(*unquantized_args, compute_dtype=np.float64, **unquantized_kwargs))
    if quantized.shape != exact.shape:
        raise ValueError(f"unquantized_args: reference shape {exact.shape} differs from the quantized one's "
                         f"{quantized.shape}")
    finite_both = np.isfinite(quantized) & np.isfinite(exact)
    abs_err = np.where(finite_both, np.abs(quantized - np.where(finite_both, exact, 0.0)), 0.0)
    rel_err = _relative(abs_err, exact, finite_both, unquantized_dtype)
    return {"kv_cache_dtype": kwargs["kv_cache_dtype"], "unquantized_dtype": unquantized_dtype,
            "max_abs_err": float(abs_err.max(initial=0.0)), "max_rel_err": float(rel_err.max(initial=0.0))}
