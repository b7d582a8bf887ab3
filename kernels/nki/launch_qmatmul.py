"""Host side of the NKI quantized-matmul kernel: the backend's `qmatmul`, `unsupported` and `traceable`
(the launcher contract of `nkilab.kernels.ops._op`).

Inputs arrive validated by the public API (`nkilab.kernels.qmatmul`). The kernel reads the QuantizedWeight
arrays in their HBM layouts (data, scales, zeros) but for two prepared copies — symmetric int4 nibbles as offset
binary (xor 0x88 per byte: the unpack needs no xor) and the scales once more channels first ([N, G]: decode loads
them with the channels on partitions) — and x as [M, K]; the host also narrows float64 inputs to float32
(NeuronCores have no float64) and widens the kernel's float32 result back when float64 was asked for. On a device
the prepared copies belong with the weights, made once when they are loaded.
"""

from __future__ import annotations

import numpy as np

from nkilab.kernels._adapter import dtype_name, numpy_dtype
from nkilab.reference.quant import FP8_DTYPES, QuantizedActivation, QuantizedWeight

from . import launch_tuning
from ._launch import EMPTY_REASON, launch, neuron_target
from .qmatmul import ACCEPTED_OUT, MAX_K, PMAX, qmatmul_kernel
from .qmatmul.tuning import check_overrides

X_DTYPES = ("float32", "bfloat16", "float16", "float64")  # x dtypes accepted (float64 narrowed to float32)
# symmetric int4 nibbles (two's complement -8..7) xor 8 = offset binary q + 8 (0..15): the kernel's unpack then
# needs no xor (kernels/nki/qmatmul/DESIGN.md, "int4 unpack"); both nibbles of a byte at once
OFFSET_BINARY_FLIP = np.uint8(0x88)
# what `nkilab tune` searches (`launch_tuning`): values around `qmatmul.tuning`'s defaults; prefill_sbuf_bytes
# 512 KiB is more than any target's SBUF partition: the emulator refuses the problems whose resident x^T and
# weights then outgrow it, and tune rejects it
TUNING_CHOICES = {"decode_dma_cols": (1024, 2048, 4096), "decode_lookahead": (1, 2, 3),
                  "prefill_sbuf_bytes": (128 * 1024, 160 * 1024, 512 * 1024)}
TUNING_TABLE = launch_tuning.table_path(__file__)  # rows: overrides of `qmatmul.tuning`'s defaults ({} = none)


def shape_class(problem: dict) -> str:
    """The tuning-table row of a problem: its weight scheme (the classes of `qmatmul.tuning.CLASS_DEFAULTS`)."""
    return problem["scheme"]


def tuned(problem: dict, target: str, tuning: dict | None = None) -> dict:
    """The tuning overrides of a call: TUNING_TABLE's (target, class) row, then `tuning` (else
    `problem["tunables"]`, trace mode's)."""
    row = launch_tuning.settings(launch_tuning.load(TUNING_TABLE), target, shape_class(problem))
    overrides = tuning if tuning is not None else problem.get("tunables")
    if overrides is not None:
        check_overrides(overrides)
    return {**row, **(overrides or {})}


def qmatmul(x, qw: QuantizedWeight, *, out_dtype=None, target: str | None = None, tuning: dict | None = None):
    """y[M, N] = x[M, K] @ W[K, N] on the NKI backend (real SDK if installed, else the emulator).

    Args:
        x: [M, K] float32|bfloat16|float16|float64 NumPy array, or a QuantizedActivation (W8A8, fp8 [M, K]
            data with float32 [M, 1] per-token scales; qw then fp8 per channel).
        qw: QuantizedWeight of shape (K, N).
        out_dtype: result dtype; None = x's dtype (float32 for a QuantizedActivation).
        target: "inf2" | "trn1" | "trn2" | "trn3"; None = $NEURON_PLATFORM_TARGET_OVERRIDE or "trn2".
        tuning: {tunable: int} overriding the kernel's defaults (`qmatmul.tuning.TUNABLES`), or None.

    Returns:
        y: [M, N] NumPy array of out_dtype.

    Raises:
        ValueError: the problem is outside what the kernel supports (see `unsupported`), or a tuning value
            breaks its rule (`qmatmul.tuning.check_overrides`; TypeError for a non-int).
    """
    w8a8 = isinstance(x, QuantizedActivation)
    xdata = x.data if w8a8 else x
    out_name = dtype_name(out_dtype) if out_dtype is not None else ("float32" if w8a8 else dtype_name(xdata))
    reason = unsupported(scheme=qw.scheme, group_size=qw.group_size, symmetric=qw.symmetric, w8a8=w8a8,
                         m=xdata.shape[0], k=qw.shape[0], n=qw.shape[1], dtype=dtype_name(xdata))
    if reason:
        raise ValueError(f"qmatmul: backend 'nki' cannot run this problem: {reason}")
    args, kwargs = kernel_inputs(x, qw, out_name, tuned({"scheme": qw.scheme}, neuron_target(target), tuning))
    y = launch(qmatmul_kernel, *args, target=target, **kwargs)
    return y if kwargs["out_dtype"] == out_name else y.astype(numpy_dtype(out_name))


def kernel_inputs(x, qw: QuantizedWeight, out_name: str, tuning: dict | None = None) -> tuple[tuple, dict]:
    """(args, kwargs) of `qmatmul_kernel` for validated inputs: x [M, K] (float64 narrowed to float32) or a
    QuantizedActivation's data and scales, the QuantizedWeight arrays as they are but for two host-side
    layouts (prepared weights): symmetric int4 data as offset-binary nibbles (every byte xor 0x88) and the scales
    once more, channels first, and the compile-time config
    (out_dtype: `out_name`, or float32 when the device cannot produce it, e.g. float64; the `tuning` overrides,
    checked by `check_overrides`)."""
    if tuning is not None:
        check_overrides(tuning)
    w8a8 = isinstance(x, QuantizedActivation)
    xdata = x.data if w8a8 else np.asarray(x)
    if xdata.dtype == np.float64:
        xdata = xdata.astype(np.float32)
    scales = qw.scales.astype(np.float32)
    data = qw.data ^ OFFSET_BINARY_FLIP if qw.scheme == "int4" and qw.symmetric else qw.data
    args = (xdata, data, scales, np.ascontiguousarray(scales.T), qw.zeros, x.scales if w8a8 else None)
    kernel_out = out_name if out_name in ACCEPTED_OUT else "float32"
    return args, dict(scheme=qw.scheme, group_size=None if qw.group_size is None else int(qw.group_size),
                      symmetric=bool(qw.symmetric), out_dtype=kernel_out, **(tuning or {}))


def unsupported(**problem) -> str | None:
    """Why the NKI qmatmul kernel cannot run `problem` (None when it can).

    Keys: scheme, group_size, symmetric, w8a8, m, k, n, dtype, empty (any may be missing)."""
    if problem.get("empty"):
        return EMPTY_REASON
    scheme, group_size = problem.get("scheme"), problem.get("group_size")
    dtype, k = problem.get("dtype"), problem.get("k")
    # W8A8 activations are fp8 by construction (a QuantizedActivation); `dtype` then names the unquantized x
    if not problem.get("w8a8") and dtype is not None and dtype not in X_DTYPES:
        return f"dtype {dtype} is not an input dtype of the kernel; use one of {X_DTYPES}"
    if group_size is not None:
        rows = group_size // 2 if scheme == "int4" else group_size
        if rows == 0 or (PMAX % rows and rows % PMAX):
            return (f"group_size {group_size}: its rows per K tile ({rows}) must divide {PMAX} or be a "
                    f"multiple of {PMAX}")
    if k is not None and k > MAX_K:
        return f"k {k} > {MAX_K} (prefill keeps the bf16 x^T of at least 128 rows of M resident in SBUF)"
    return None


def traceable(problem: dict, target: str | None, tuning: dict | None = None):
    """(kernel, args, kwargs) running `problem` at its real shapes with zero inputs, for trace mode on `target`.

    problem keys (`nkilab.kernels.ops.qmatmul.spec` plus the shape parameters): m, k, n, scheme, group_size,
    symmetric, w8a8, dtype. `target` must be a Neuron target (ValueError otherwise); the kernel takes its
    generation branches from the target the trace runs on (`_launch.trace`). tuning: as for `qmatmul`."""
    target = neuron_target(target)
    reason = unsupported(**problem)
    if reason:
        raise ValueError(f"qmatmul: backend 'nki' cannot trace this problem: {reason}")
    m, k, n = problem["m"], problem["k"], problem["n"]
    scheme, group_size = problem["scheme"], problem.get("group_size")
    symmetric = problem.get("symmetric", True)
    groups = 1 if group_size is None else k // group_size
    if scheme == "int4":
        data = np.zeros((k // 2, n), np.uint8)
    elif scheme == "int8":
        data = np.zeros((k, n), np.int8)
    else:
        data = np.zeros((k, n), FP8_DTYPES[scheme])
    zeros = None if symmetric else np.zeros((groups, n), np.uint8)
    qw = QuantizedWeight(data, np.ones((groups, n), np.float32), zeros, scheme, group_size, (k, n), symmetric)
    if problem.get("w8a8", False):
        x = QuantizedActivation(np.zeros((m, k), FP8_DTYPES[scheme]), np.ones((m, 1), np.float32), scheme)
        out_name = "float32"
    else:
        x = np.zeros((m, k), numpy_dtype(problem["dtype"]))
        out_name = problem["dtype"]
    args, kwargs = kernel_inputs(x, qw, out_name, tuned(problem, target, tuning))
    return qmatmul_kernel, args, kwargs
