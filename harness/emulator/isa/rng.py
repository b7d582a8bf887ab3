"""Random numbers (S-ISA): `rng`, `rand2`, `dropout`, `set_rng_seed`, `rand_set_state`, `rand_get_state`.

Model: each engine that generates random numbers (VectorE; GpSimdE on NeuronCore-v3+) keeps one PRNG state per
compute lane (absolute partition), persistent for the rest of the run and separate per LNC program instance. The
docs name the generator XORWOW and give its state size per lane: 6 uint32 words on GpSimd, 24 on Vector. The
emulator runs Marsaglia's XORWOW (five xorshift words + a Weyl counter = 6 words) per lane; VectorE's 24 words are
four such generators used round-robin, element by element along the free dim.

NOT bit-exact: the hardware's seeding schedule, lane-to-stream mapping and output order are unpublished, so the
values are deterministic given the seed / state but do not match a device's. Tests check distributions, shapes and
state semantics (same seed -> same sequence; get_state after set_state returns what was set, advanced by the draws),
not bits. An engine never seeded starts from the state `set_rng_seed` makes from seed 0.

Draws: `rng` writes each element the low bits of one 32-bit draw (the dtype's width, S-ISA "taking the least
significant bits"); `rand2` maps a draw u to min + (u / 2^32) * (max - min) in fp32; `dropout` zeroes an element
when its draw / 2^32 < prob (kept elements are not rescaled: S-ISA describes replacement by zero only).
"""

from __future__ import annotations

import numpy as np

from .. import dtypes, validate
from ..errors import NkiValidationError
from ..tensor import NkiTensor
from .enums import coerce
from .enums import engine as Engine
from .issue import computes, current, f32, lanes, layout_attrs, operand, raw, record, store

WORDS = {"gpsimd": 6, "vector": 24}  # PRNG state words per lane (S-ISA rand_set_state / rand_get_state)
XORWOW_WORDS = 6
WEYL = np.uint32(362437)
_INT_DTYPES = ("int8", "int16", "int32", "uint8", "uint16", "uint32")
_U32 = np.uint32


def _splitmix32(x: np.ndarray) -> np.ndarray:
    """A 32-bit integer mix (seeding only): distinct, well-spread words from (seed, lane, word) counters."""
    x = (x + _U32(0x9E3779B9)).astype(_U32)
    x ^= x >> _U32(16)
    x = (x * _U32(0x85EBCA6B)).astype(_U32)
    x ^= x >> _U32(13)
    x = (x * _U32(0xC2B2AE35)).astype(_U32)
    x ^= x >> _U32(16)
    return x


def seeded_state(seed: int, engine: str, lanes_: int = 128) -> np.ndarray:
    """uint32 [lanes, words] state derived from one 32-bit seed (nonzero xorshift words in every generator)."""
    words = WORDS[engine]
    counter = (np.arange(lanes_, dtype=np.uint64)[:, None] * words + np.arange(words, dtype=np.uint64)[None, :])
    with np.errstate(over="ignore"):
        state = _splitmix32((counter + np.uint64(seed) * np.uint64(0x632BE5AB)).astype(_U32))
        state = _splitmix32(state ^ _U32(seed & 0xFFFFFFFF))
    state[state == 0] = 1  # an all-zero xorshift state never leaves zero
    return state


def _state(ctx, engine: str) -> np.ndarray:
    key = (ctx.program_id, engine)
    if key not in ctx.rng:
        ctx.rng[key] = seeded_state(0, engine)
    return ctx.rng[key]


def _xorwow(gen: np.ndarray) -> np.ndarray:
    """One XORWOW step on [lanes, 6] generators in place; returns the [lanes] uint32 outputs."""
    with np.errstate(over="ignore"):
        t = gen[:, 0] ^ (gen[:, 0] >> _U32(2))
        gen[:, 0:4] = gen[:, 1:5]
        v = gen[:, 3]
        gen[:, 4] = (v ^ (v << _U32(4))) ^ (t ^ (t << _U32(1)))
        gen[:, 5] = gen[:, 5] + WEYL
        return (gen[:, 4] + gen[:, 5]).astype(_U32)


def draw(ctx, engine: str, sl: slice, count: int) -> np.ndarray:
    """`count` uint32 draws for each lane in `sl`: [lanes, count], advancing the engine's state."""
    state = _state(ctx, engine)[sl]
    streams = state.shape[1] // XORWOW_WORDS
    gens = [state[:, k * XORWOW_WORDS:(k + 1) * XORWOW_WORDS].copy() for k in range(streams)]
    out = np.empty((state.shape[0], count), _U32)
    for i in range(count):
        out[:, i] = _xorwow(gens[i % streams])
    for k, g in enumerate(gens):
        state[:, k * XORWOW_WORDS:(k + 1) * XORWOW_WORDS] = g
    _state(ctx, engine)[sl] = state
    return out


def _engine(opc: str, engine, t, allowed_from: dict) -> str:
    """The engine name for `engine`, checked against the generation each engine needs (allowed_from: name -> gen)."""
    eng = coerce(Engine, engine, opc, "engine")
    name = {Engine.vector: "vector", Engine.gpsimd: "gpsimd"}.get(eng)
    if name not in allowed_from:
        raise NkiValidationError(opc, "engine", f"one of {sorted(allowed_from)}", eng.name, t.name)
    validate.feature(opc, "engine", t.gen >= allowed_from[name], f"{name} needs NeuronCore-v{allowed_from[name]}+",
                     name, t)
    return name


def _seed_operand(opc: str, name: str, x, t) -> None:
    validate.tile(opc, name, x, t)
    validate.buffer(opc, name, x, ("sbuf", "psum"), t)
    if x.size != 1 or x.itemsize != 4:
        raise NkiValidationError(opc, name, "a [1, 1] tensor holding a 32-bit value",
                                 f"{list(x.shape)} {dtypes.name(x.dtype)}", t.name)


def set_rng_seed(src_seeds, name=None):
    """Seed VectorE's PRNG (every lane) from the 32-bit value in the [1, 1] SBUF/PSUM tensor src_seeds."""
    opc = "set_rng_seed"
    ctx = current()
    t = ctx.target
    _seed_operand(opc, "src_seeds", src_seeds, t)
    vals = raw(src_seeds) if src_seeds.storage.data is not None else None
    if vals is not None:  # the seed's 32 bits, whatever the dtype
        ctx.rng[(ctx.program_id, "vector")] = seeded_state(int(vals.reshape(-1).view(np.uint32)[0]), "vector")
    else:  # trace mode, seed unknown: later draws cannot be vouched for, keep a deterministic placeholder
        ctx.rng[(ctx.program_id, "vector")] = seeded_state(0, "vector")
    record(ctx, "vector", opc, {}, {"src_seeds": src_seeds}, attrs=layout_attrs(src_seeds))


def _state_operand(opc: str, name: str, x, engine) -> tuple:
    """Validate a PRNG-state operand (uint32, WORDS[engine] per partition; SBUF, or PSUM too on v4 Vector);
    returns (run context, engine name). GpSimd from NeuronCore-v3, Vector from v4 (S-ISA)."""
    ctx = current()
    t = ctx.target
    eng = _engine(opc, engine, t, {"gpsimd": 3, "vector": 4})
    validate.tile(opc, name, x, t)
    validate.buffer(opc, name, x, ("sbuf",) if eng == "gpsimd" or t.gen < 4 else ("sbuf", "psum"), t)
    if x.dtype != dtypes.DTYPES["uint32"]:
        raise NkiValidationError(opc, name, "uint32", dtypes.name(x.dtype), t.name)
    if x.free_size != WORDS[eng]:
        raise NkiValidationError(opc, name, f"{WORDS[eng]} XORWOW state words per partition on {eng}",
                                 x.free_size, t.name)
    return ctx, eng


def rand_set_state(src_seeds, engine=Engine.gpsimd, name=None):
    """Load the PRNG state of the lanes src_seeds occupies: [P, 6] uint32 (GpSimd) or [P, 24] (Vector, v4+)."""
    ctx, eng = _state_operand("rand_set_state", "src_seeds", src_seeds, engine)
    if src_seeds.storage.data is not None:
        _state(ctx, eng)[lanes(src_seeds)] = raw(src_seeds).reshape(src_seeds.shape[0], -1)
    record(ctx, eng, "rand_set_state", {}, {"src_seeds": src_seeds}, attrs=layout_attrs(src_seeds))


def rand_get_state(dst, engine=Engine.gpsimd, name=None):
    """Store the PRNG state of the lanes dst occupies into dst ([P, 6] / [P, 24] uint32)."""
    ctx, eng = _state_operand("rand_get_state", "dst", dst, engine)
    if computes(ctx, (dst,), ()):
        store(dst, _state(ctx, eng)[lanes(dst)].copy())
    record(ctx, eng, "rand_get_state", {"dst": dst}, {}, attrs=layout_attrs(dst))


def rng(dst, engine=Engine.vector, name=None):
    """dst = the low bits of one 32-bit draw per element (integer dst; Vector on every generation, GpSimd v3+)."""
    opc = "rng"
    ctx = current()
    t = ctx.target
    eng = _engine(opc, engine, t, {"vector": 2, "gpsimd": 3})
    validate.tile(opc, "dst", dst, t)
    if eng == "gpsimd":
        validate.gpsimd_no_psum(opc, {"dst": dst}, t)
    if dtypes.name(dst.dtype) not in _INT_DTYPES:
        raise NkiValidationError(opc, "dst", f"an integer dtype in {_INT_DTYPES}", dtypes.name(dst.dtype), t.name)
    bits = draw(ctx, eng, lanes(dst), dst.free_size)
    if computes(ctx, (dst,), ()):
        width = {1: np.uint8, 2: np.uint16, 4: np.uint32}[dst.itemsize]
        store(dst, bits.astype(width).view(dst.dtype))
    record(ctx, eng, opc, {"dst": dst}, {}, attrs=layout_attrs(dst))


def _uniform(ctx, t: NkiTensor) -> np.ndarray:
    """[P, F] float32 in [0, 1) from VectorE draws (24 significant bits, so 1.0 is never reached)."""
    bits = draw(ctx, "vector", lanes(t), t.free_size)
    return (bits >> _U32(8)).astype(np.float32) * np.float32(2.0 ** -24)


def rand2(dst, min, max, name=None):  # noqa: A002 - the NKI parameter names
    """dst = uniform values in [min, max) (fp32 scalars or (P, 1) tiles; min < max), cast to dst. VectorE,
    NeuronCore-v4 only."""
    opc = "rand2"
    ctx = current()
    t = ctx.target
    validate.feature(opc, "op", t.gen >= 4, "rand2 needs NeuronCore-v4", opc, t)
    validate.tile(opc, "dst", dst, t)
    p = dst.shape[0]
    validate.vector_operand(opc, "min", min, p, t)
    validate.vector_operand(opc, "max", max, p, t)
    if not isinstance(min, NkiTensor) and not isinstance(max, NkiTensor) and not float(min) < float(max):
        raise NkiValidationError(opc, "min/max", "min < max", (min, max), t.name)
    u = _uniform(ctx, dst)
    if computes(ctx, (dst,), (min, max)):
        lo, hi = operand(min, p), operand(max, p)
        store(dst, (lo + u * (hi - lo)).astype(np.float32))
    record(ctx, "vector", opc, {"dst": dst}, {"min": min, "max": max}, flops=2 * dst.size, attrs=layout_attrs(dst))


def dropout(dst, data, prob, name=None):
    """dst = data, with each element replaced by 0 with probability prob (a scalar or (P, 1) tile; float32 for
    integer data). dst.dtype == data.dtype. VectorE."""
    opc = "dropout"
    ctx = current()
    t = ctx.target
    validate.tiles(opc, t, data=data, dst=dst)
    if dst.dtype != data.dtype:
        raise NkiValidationError(opc, "dst", f"dtype == data's {dtypes.name(data.dtype)}", dtypes.name(dst.dtype),
                                 t.name)
    p = data.shape[0]
    validate.vector_operand(opc, "prob", prob, p, t)
    if isinstance(prob, NkiTensor) and not dtypes.is_float(prob.dtype):
        raise NkiValidationError(opc, "prob", "a float tile", dtypes.name(prob.dtype), t.name)
    if isinstance(prob, NkiTensor) and dtypes.is_int(data.dtype) and prob.dtype != dtypes.float32:
        raise NkiValidationError(opc, "prob", "float32 for integer data", dtypes.name(prob.dtype), t.name)
    u = _uniform(ctx, data)
    if computes(ctx, (dst,), (data, prob)):
        keep = u >= operand(prob, p)
        vals = raw(data)
        store(dst, np.where(keep, vals, np.zeros((), vals.dtype)) if dtypes.is_int(data.dtype) else
              np.where(keep, f32(data), np.float32(0.0)))
    record(ctx, "vector", opc, {"dst": dst}, {"data": data, "prob": prob}, flops=dst.size,
           attrs=layout_attrs(dst, data))
