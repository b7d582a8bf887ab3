"""The hardware and language rules the emulator enforces; each raises `NkiValidationError(op, operand, limit, value)`.

Sources (tags defined in `nkilab.harness.emulator`): S-ISA (per-instruction rules), S-A2 "Accessing SBUF/PSUM
tensors" (partition rules), S-RN (the 0.6.0 partition-limit verification), S-TILE (PSUM free size). Generation-dependent
facts come from
the hardware table's Neuron rows (`nkilab.harness.chips.NeuronTarget`), never from literals here.
"""

from __future__ import annotations

from nkilab.harness.chips import NeuronTarget as Target

from . import dtypes
from .errors import NkiValidationError
from .storage import ON_CHIP
from .tensor import NkiTensor


# Elements per partition of one SBUF engine operand — S-A2 (its PSUM bound, 4K fp32, is the whole 16 KiB PSUM
# partition, which allocation already enforces)
SBUF_OPERAND_FMAX = 64 * 1024
# An engine access pattern's per-dim step is an int16, in elements (its per-dim size a uint16, which the compiler
# can meet by splitting a long unit-step dim, so the emulator checks only the step) — S-A2 "Accessing SBUF/PSUM"
AP_MIN_STEP, AP_MAX_STEP = -2 ** 15, 2 ** 15 - 1


def _start_partitions(count: int) -> tuple[int, ...]:
    """Allowed start partitions of an engine operand by partition count (S-A2): > 64 → 0; 33–64 → 0 or 64;
    ≤ 32 → a quadrant start (0/32/64/96)."""
    if count > 64:
        return (0,)
    if count > 32:
        return (0, 64)
    return (0, 32, 64, 96)


def tile(op: str, operand: str, t: NkiTensor, target: Target, *, engine: bool = True) -> None:
    """An on-chip instruction operand: partition dim ≤ pmax, contiguous partitions, start-partition rule
    (`engine`: compute engines; DMA may start anywhere), and no runtime indirection.

    A view that passed the engine rules for `target` is remembered (`NkiTensor._valid_for`: views are immutable),
    so reusing it (an accumulator, a loaded tile) checks nothing again: this runs for every operand. A layout that
    passed the rules that do not depend on the offset is remembered too (`Layout.engine_ok` / `dma_ok`), so a fresh
    view of a known layout (a new tile each loop iteration) checks only its start partition."""
    if not isinstance(t, NkiTensor):
        raise NkiValidationError(op, operand, "an NKI tensor", type(t).__name__, target.name)
    if t.out_of_bounds is not None:
        e = t.out_of_bounds
        raise NkiValidationError(op, operand, e.limit, e.value, target.name)
    if t._valid_for is target:
        return
    lay = t.layout
    if t.indirect is None and (lay.engine_ok if engine else lay.dma_ok) is target:
        if engine:
            _start_partition(op, operand, t, target)
            t._valid_for = target
        return
    st = t.storage
    if st.buffer not in ON_CHIP:
        if engine:
            raise NkiValidationError(op, operand, "an SBUF/PSUM tile (compute engines cannot access HBM)", st.buffer,
                                     target.name)
        if t.indirect is None:
            lay.dma_ok = target
        return
    if engine and t.indirect is not None:
        raise NkiValidationError(op, operand, "no runtime (.ap offset) addressing on compute engines", t, target.name)
    shape, strides = t.shape, t.strides
    count = shape[0]
    if count > target.pmax:
        raise NkiValidationError(op, operand, f"partition dim <= {target.pmax}", count, target.name)
    if count > 1 and strides[0] != st.free:
        raise NkiValidationError(op, operand, "contiguous partitions (no partition striding)",
                                 f"partition stride {strides[0]} elements, storage row {st.free}", target.name)
    if not engine:
        if t.indirect is None:
            lay.dma_ok = target
        return
    _start_partition(op, operand, t, target)
    if st.buffer == "sbuf" and t.size // count > SBUF_OPERAND_FMAX:
        raise NkiValidationError(op, operand, f"at most {SBUF_OPERAND_FMAX} elements per partition of SBUF",
                                 t.free_size, target.name)
    for d in (1,) if len(shape) == 2 else range(1, len(shape)):
        if shape[d] > 1 and not AP_MIN_STEP <= strides[d] <= AP_MAX_STEP:
            raise NkiValidationError(op, operand, f"free-dim access pattern step in [{AP_MIN_STEP}, "
                                     f"{AP_MAX_STEP}] elements (int16)",
                                     f"shape {list(shape)} strides {list(strides)}", target.name)
    t._valid_for = lay.engine_ok = target


def _start_partition(op: str, operand: str, t: NkiTensor, target: Target) -> None:
    """The start-partition rule of an engine operand (`_start_partitions`, inlined), at its absolute partition."""
    st = t.storage
    count = t.shape[0]
    start = (st.placement[1] if st.placement is not None else 0) + t.offset // st.free
    if start and (count > 64 or start % 32 or (count > 32 and start != 64)):
        raise NkiValidationError(op, operand, f"start partition in {_start_partitions(count)} for {count} partitions",
                                 start, target.name)


def buffer(op: str, operand: str, t: NkiTensor, allowed: tuple[str, ...], target: Target) -> None:
    if t.buffer not in allowed and not (t.buffer in ("hbm", "private_hbm", "shared_hbm") and "hbm" in allowed):
        raise NkiValidationError(op, operand, f"buffer in {allowed}", t.buffer, target.name)


def not_both_psum(op: str, a_name: str, a, b_name: str, b, target: Target) -> None:
    if isinstance(a, NkiTensor) and isinstance(b, NkiTensor) and a.buffer == "psum" and b.buffer == "psum":
        raise NkiValidationError(op, f"{a_name}/{b_name}", "not both in PSUM", "both psum", target.name)


def tiles(op: str, target: Target, **operands) -> None:
    """Engine operands given as name=tensor: each checked by `tile`, in order, then all with the first one's
    partitions and elements per partition (the element-wise layout rule of most Vector/Scalar/GpSimd ops)."""
    ref = None
    for name, t in operands.items():
        tile(op, name, t, target)
        if ref is None:
            ref_name, ref = name, t
        elif t.shape[0] != ref.shape[0] or t.size != ref.size:
            same_layout(op, ref_name, ref, {name: t}, target)  # raises


def pair(op: str, target: Target, name1: str, t1, name2: str, t2) -> None:
    """`tiles(op, target, name1=t1, name2=t2)`, the two-operand case of the hot element-wise ops: nothing is checked
    again when both views already passed `tile` for `target` and share the layout rule."""
    if type(t1) is NkiTensor and type(t2) is NkiTensor and t1._valid_for is target and t2._valid_for is target \
            and t1.shape[0] == t2.shape[0] and t1.size == t2.size:
        return  # (a view passes `tile` only in bounds: its `out_of_bounds` is set when it is made, if ever)
    tiles(op, target, **{name1: t1, name2: t2})


def same_layout(op: str, ref_name: str, ref: NkiTensor, others: dict, target: Target) -> None:
    """Same partition count and elements per partition as `ref`."""
    for name, t in others.items():
        if t.shape[0] != ref.shape[0] or t.free_size != ref.free_size:
            raise NkiValidationError(op, name, f"same partitions and elements per partition as {ref_name} "
                                     f"({ref.shape[0]} x {ref.free_size})", f"{t.shape[0]} x {t.free_size}",
                                     target.name)


def feature(op: str, operand: str, enabled: bool, what: str, value, target: Target) -> None:
    """A generation-only feature used on a target without it."""
    if not enabled:
        raise NkiValidationError(op, operand, what, value, target.name)


def vector_operand(op: str, operand: str, v, partitions: int, target: Target, *, fp32: bool = False) -> None:
    """A scalar or a (P, 1) tile broadcast along the free dim; `fp32`: a tile must be float32 (S-ISA: tensor_scalar
    operands, activation scale, exponential max_value, tensor_scalar_cumulative imm0)."""
    if isinstance(v, NkiTensor):
        tile(op, operand, v, target)
        if v.shape[0] != partitions or v.free_size != 1:
            raise NkiValidationError(op, operand, f"a scalar or a ({partitions}, 1) tile", list(v.shape), target.name)
        if fp32 and v.dtype != dtypes.float32:
            raise NkiValidationError(op, operand, "a float32 (P, 1) tile", dtypes.name(v.dtype), target.name)
    elif not isinstance(v, (int, float)) or isinstance(v, bool):
        raise NkiValidationError(op, operand, "a compile-time scalar or a (P, 1) tile", type(v).__name__, target.name)


def gpsimd_no_psum(op: str, tensors: dict, target: Target) -> None:
    """GpSimd cannot access PSUM (S-ISA, S-A2)."""
    for name, t in tensors.items():
        if isinstance(t, NkiTensor) and t.buffer == "psum":
            raise NkiValidationError(op, name, "GpSimd Engine cannot access PSUM", "psum", target.name)


def int_dtypes(op: str, tensors: dict, target: Target) -> None:
    """Bitvec operators work on integer bit patterns only."""
    for name, t in tensors.items():
        if isinstance(t, NkiTensor) and not dtypes.is_int(t.dtype):
            raise NkiValidationError(op, name, "integer dtype for bitvec operators", dtypes.name(t.dtype), target.name)
