"""rope: rotary position embedding of the queries and keys — the op family, declared once (public function, rules,
reference, workload, check, plot axes, GPU-bench baselines).

Per rank, a decoder layer rotates its q [T, Hq, D] and k [T, Hkv, D] once, after the QKV projection and before the
cache write: T = the decode batch (one token per sequence) or the prefill length, Hq / Hkv the heads of the rank
(tensor parallelism splits heads), the model's rope_theta and rope scaling (`ModelShape`).

The public function returns new arrays (the caller's q and k are never written: a NumPy caller may hold views of
them). A runtime that wants vLLM's in-place behaviour calls the NKI kernel with `in_place=True`
(`nkilab.kernels.nki.rope.rope_kernel`), which writes the rotation over q and k in HBM, or assigns the result back
(`q[...] = q_rot`).
"""

from __future__ import annotations

import numbers

import numpy as np

from nkilab import reference
from nkilab.kernels import _backends, _checks
from nkilab.kernels._adapter import dtype_name, numpy_dtype, to_numpy, to_torch
from nkilab.kernels.ops._op import Check, Launcher, Op, Plot, TorchOp
from nkilab.kernels.ops._problem import Problem
from nkilab.reference import rotary
from nkilab.reference.dtypes import itemsize
from nkilab.reference.rotary import STYLES, RopeScaling

MAX_POSITION = 2**24  # positions are exact in fp32 below this (the kernels' angle or table-row arithmetic)


def rope(q, k, positions, *, theta=10000.0, rotary_dim=None, style="neox", scaling=None, backend="auto",
         target=None):
    """(q', k'): each head's first rotary_dim dims rotated by angle position × theta^(-2i/rotary_dim), plane i.

    Dimensions: T tokens; Hq query heads, Hkv key heads of D dims; r = rotary_dim.

    Args:
        q: [T, Hq, D] float16|bfloat16|float32|float64 (NumPy or torch), Hq >= 1.
        k: [T, Hkv, D], q's dtype, Hkv >= 1.
        positions: [T] integer dtype, each in [0, 2**24): the absolute position of each token (vLLM's `positions`).
        theta: finite number > 0, the frequency base (config.json rope_theta; Llama-3.1 500000).
        rotary_dim: None (= D) or an even int in [2, D]: dims r..D pass through (partial rotary).
        style: "neox" (pairs (x[i], x[i + r/2]): HF Llama/Qwen/Mistral) | "gptj" (pairs (x[2i], x[2i + 1])).
        scaling: None, an `nkilab.reference.RopeScaling`, or an HF rope_scaling dict of rope_type "llama3"
            (Llama-3.1); other rope types raise ValueError.
        backend: "reference" | "nki" | "triton" | "auto" (see nkilab.kernels.api).
        target: Neuron target of the NKI backend ("inf2" | "trn1" | "trn2" | "trn3"); None = its default.

    Returns:
        (q', k'): new arrays of q's and k's shapes, dtype and kind (q and k are not modified).

    Raises:
        TypeError / ValueError: naming the argument, before any work (shapes, dtypes, positions, options, backend).

    Numerics: the NKI kernel's cos/sin are float64 values rounded to fp32 (a host table); the Triton kernel forms
    fp32 angles as HF/vLLM do (an error that grows with the position: ~1e-3 rad at 131072); products and sums in
    fp32, one rounding into q's dtype. The reference computes in float64.

    Example:
        >>> import numpy as np
        >>> x = np.array([[[1.0, 0.0]]])  # one token at position 1, one head, D = 2: rotated by 1 radian
        >>> q2, k2 = rope(x, x, np.array([1]), backend="reference")
        >>> q2.round(4).tolist()
        [[[0.5403, 0.8415]]]
    """
    options = check(q, k, positions, theta=theta, rotary_dim=rotary_dim, style=style, scaling=scaling)
    problem = dict(dtype=dtype_name(q), q_heads=int(q.shape[1]), kv_heads=int(k.shape[1]), head_dim=int(q.shape[2]),
                   rotary_dim=options["rotary_dim"], style=options["style"], empty=_backends.empty(q, k))
    name, impl = _backends.choose(OP, backend, problem, target=target)
    out = impl(*(_backends.to_backend(name, a) for a in (q, k, positions)), **options)
    return tuple(_backends.back(a, q) for a in out)


def check(q, k, positions, *, theta, rotary_dim, style, scaling) -> dict:
    """Validate rope inputs; returns the options every backend receives: theta (float), rotary_dim (int), style,
    scaling (RopeScaling or None)."""
    _checks.arrays(q=q, k=k, positions=positions)
    _checks.ndim("q", q, 3, "[T, Hq, D]")
    _checks.ndim("k", k, 3, "[T, Hkv, D]")
    _checks.float_dtype("q", q)
    _checks.same_dtype("q, k", q, k)
    t, hq, d = q.shape
    if k.shape[0] != t or k.shape[2] != d:
        raise ValueError(f"k: [T, Hkv, D] must share q's T={t} and D={d}, got shape {tuple(k.shape)}")
    if hq < 1 or k.shape[1] < 1:
        raise ValueError(f"q, k: need at least one head each, got Hq={hq}, Hkv={k.shape[1]}")
    _positions(positions, t)
    return dict(theta=_checks.positive_number("theta", theta), rotary_dim=_rotary_dim(rotary_dim, d),
                style=_style(style), scaling=RopeScaling.from_config(scaling))


def _positions(positions, t: int) -> None:
    _checks.ndim("positions", positions, 1, "[T]")
    _checks.int_dtype("positions", positions)
    if positions.shape[0] != t:
        raise ValueError(f"positions: length {positions.shape[0]} must equal q's T={t}")
    values = to_numpy(positions).astype(np.int64)
    bad = np.flatnonzero((values < 0) | (values >= MAX_POSITION))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"positions: positions[{i}] = {values[i]} must be in [0, 2**24) (an absolute token "
                         "position; 2**24 keeps it exact in fp32)")


def _rotary_dim(rotary_dim, d: int) -> int:
    r = d if rotary_dim is None else rotary_dim
    if isinstance(r, (bool, np.bool_)) or not isinstance(r, numbers.Integral) or r < 2 or r > d or r % 2:
        shown = f"None (= head_dim D = {d})" if rotary_dim is None else repr(rotary_dim)
        raise ValueError(f"rotary_dim: must be an even int in [2, D={d}] (it rotates pairs of dims), got {shown}")
    return int(r)


def _style(style) -> str:
    if style not in STYLES:
        raise ValueError(f"style: must be one of {STYLES}, got {style!r}")
    return str(style)


def _run_reference(q, k, positions, **options):
    return tuple(a.astype(q.dtype) for a in reference.rope(q, k, positions, **options))


# --- the check: q' and k' side by side along the heads axis ----------------------------------------------------------


def heads_joined(out):
    """(q', k') as one [T, Hq + Hkv, D] array (NumPy or torch in; NumPy out)."""
    return np.concatenate([to_numpy(a) for a in out], axis=1)


def joined_reference(q, k, positions, *, compute_dtype=np.float64, **options):
    """The reference in `heads_joined` form."""
    return heads_joined(reference.rope(q, k, positions, compute_dtype=compute_dtype, **options))


# --- workload ----------------------------------------------------------------------------------------------------


def spec(problem: Problem) -> dict:
    p = problem.params
    return dict(dtype=problem.dtype, q_heads=p["q_heads"], kv_heads=p["kv_heads"], head_dim=p["head_dim"],
                rotary_dim=p["rotary_dim"], style=p["style"])


def flops(problem: Problem) -> float:
    """Per rotated pair: four products and two sums (3 per rotated element); the pass-through dims are copies."""
    p = problem.params
    return 3.0 * p["tokens"] * (p["q_heads"] + p["kv_heads"]) * p["rotary_dim"]


def hbm_bytes(problem: Problem) -> float:
    """q and k read and written, and one cos/sin table row per token ([cos | sin], r fp32: the NKI kernel's host
    table; a kernel computing cos/sin on chip reads fewer). The positions (4 bytes a token, read once per tile of
    a prefill) are left out of this lower bound."""
    p = problem.params
    heads = itemsize(problem.dtype) * 2 * p["tokens"] * (p["q_heads"] + p["kv_heads"]) * p["head_dim"]
    return heads + p["tokens"] * 4 * p["rotary_dim"]


def make_inputs(problem: Problem, rng: np.random.Generator, zeros: bool):
    """(q, k, positions) and the options: a prefill's positions are 0..T-1 (params["consecutive"]), a decode
    batch's (and smoke shapes') are drawn in [0, 8192) (the default grid's longest context), repeats allowed."""
    p, dt = problem.params, numpy_dtype(problem.dtype)
    t = p["tokens"]
    shapes = ((t, p["q_heads"], p["head_dim"]), (t, p["kv_heads"], p["head_dim"]))
    if zeros:
        q, k = (np.zeros(s, dt) for s in shapes)
    else:
        q, k = (rng.standard_normal(s).astype(dt) for s in shapes)
    positions = np.arange(t, dtype=np.int32) if p["consecutive"] else rng.integers(0, 8192, t).astype(np.int32)
    options = dict(theta=p["theta"], rotary_dim=p["rotary_dim"], style=p["style"],
                   scaling=RopeScaling.from_config(p["scaling"]))
    return (q, k, positions), options


def _problem(model: str, phase: str, tokens: int, heads: tuple[int, int], head_dim: int, dtype: str, *,
             rotary_dim: int | None = None, style: str = "neox", theta: float = 10000.0,
             scaling: RopeScaling | None = None) -> Problem:
    """A problem named like the others: "<model>/<phase>/rope/t<T>-hq<Hq>-hkv<Hkv>-d<D>[-r<r>][-gptj]"."""
    prefix = "smoke" if phase == "smoke" else f"{model}/{phase}"
    r = head_dim if rotary_dim is None else rotary_dim
    label = (f"t{tokens}-hq{heads[0]}-hkv{heads[1]}-d{head_dim}" + (f"-r{r}" if r != head_dim else "")
             + ("-gptj" if style == "gptj" else ""))
    params = dict(tokens=tokens, q_heads=heads[0], kv_heads=heads[1], head_dim=head_dim, rotary_dim=r, style=style,
                  theta=theta, scaling=None if scaling is None else scaling.to_config(),
                  consecutive=phase == "prefill" and tokens > 1)
    return Problem(OP, f"{prefix}/rope/{label}", phase, params, dtype, tokens, model)


def smoke_problems(dtype: str) -> list[Problem]:
    """GQA heads at full rotary (neox); two token tiles (130) with partial rotary, gptj pairs and Llama-3.1 scaling."""
    llama = RopeScaling(8.0, 1.0, 4.0, 8192)
    return [_problem("smoke", "smoke", 5, (4, 2), 64, dtype),
            _problem("smoke", "smoke", 130, (3, 1), 80, dtype, rotary_dim=32, style="gptj", theta=500000.0,
                     scaling=llama)]


def model_problems(model, phase: str, grid: dict, quant, dtype: str) -> list[Problem]:
    """T = every decode batch, or every prefill length; the rank's heads, full rotary, neox; the model's rope_theta
    and rope_scaling (`model` also needs those two attributes). A composer asks for one layer's call with
    grid={"batches": (B,)} (decode) or {"prefill": (S,)}."""
    sizes = grid["batches"] if phase == "decode" else grid["prefill"]
    heads = (model.q_heads_per_rank, model.kv_heads_per_rank)
    return [_problem(model.name, phase, t, heads, model.head_dim, dtype, theta=model.rope_theta,
                     scaling=model.rope_scaling) for t in sizes]


# --- GPU bench ----------------------------------------------------------------------------------------------------


def rope_torch(q, k, positions, *, theta, rotary_dim, style, scaling, dtype):
    """The reference's rope in torch `dtype` (float64 = the truth on the GPU; the activation dtype = the naive run
    of the module `nkilab.reference.rotary`, which is also vLLM's forward_native: a cos/sin table in that dtype),
    in `heads_joined` form (a torch tensor)."""
    import torch  # optional heavy dependency: only the GPU bench calls this

    acc = torch.float64 if dtype == torch.float64 else torch.float32
    freq = torch.from_numpy(rotary.inv_freq(rotary_dim, theta, scaling)).to(q.device, acc)
    ang = positions.to(acc)[:, None] * freq[None, :]
    cos, sin = (f(ang).to(dtype).to(acc)[:, None, :] for f in (torch.cos, torch.sin))
    first, second = (torch.from_numpy(i).to(q.device) for i in rotary.pair_index(rotary_dim, style))
    out = []
    for x in (q, k):
        x = x.to(dtype)
        x1, x2 = x[..., first].to(acc), x[..., second].to(acc)
        y = x.clone()
        y[..., first] = (x1 * cos - x2 * sin).to(dtype)
        y[..., second] = (x2 * cos + x1 * sin).to(dtype)
        out.append(y)
    return torch.cat(out, dim=1)


def bench(problem: Problem, device, cache: dict):
    """(cases, truth) of the GPU bench: Triton and the torch composition (vLLM's forward_native)."""
    import torch  # optional heavy dependency: only the GPU bench calls this

    triton_rope = _backends.load(OP, "triton")[0]
    (q, k, positions), opts = make_inputs(problem, np.random.default_rng(0), False)
    q, k, positions = (to_torch(a, device=device) for a in (q, k, positions))
    cases = [("triton", lambda: triton_rope(q, k, positions, **opts)),
             ("torch (vLLM forward_native)", lambda: rope_torch(q, k, positions, dtype=q.dtype, **opts))]

    def truth():
        return tuple(rope_torch(q, k, positions, dtype=d, **opts) for d in (torch.float64, q.dtype))

    return cases, truth


# --- torch.ops.nkilab.rope -------------------------------------------------------------------------------------------


def _torch_call(q, k, positions, *, scaling=None, **options) -> list:
    """The torch op: [q', k'] (a schema has one result type); Llama-3.1's scaling as its four numbers [factor,
    low_freq_factor, high_freq_factor, original_max_position_embeddings] (a schema has no dicts)."""
    if scaling is not None:
        if len(scaling) != 4:
            raise ValueError(f"scaling: the torch op takes [factor, low_freq_factor, high_freq_factor, "
                             f"original_max_position_embeddings], got {scaling!r}")
        scaling = RopeScaling(*scaling[:3], int(scaling[3]))
    return list(rope(q, k, positions, scaling=scaling, **options))


def _fake(q, k, positions, **options) -> list:
    """torch.compile's stand-in: [q', k'] of q's and k's shapes, dtypes and devices."""
    return [q.new_empty(q.shape), k.new_empty(k.shape)]


TORCH = TorchOp(
    schema="(Tensor q, Tensor k, Tensor positions, *, float theta=10000.0, int? rotary_dim=None, str style='neox', "
           "float[]? scaling=None, str backend='auto', str? target=None) -> Tensor[]",
    fake=_fake,
    call=_torch_call,
)


OP = Op(
    name="rope",
    order=60,
    api=rope,
    reference=reference.rope,
    run_reference=_run_reference,
    backends={"nki": Launcher("nkilab.kernels.nki.launch_rope", "rope"),
              "triton": Launcher("nkilab.kernels.triton.rope", "rope")},
    spec=spec,
    flops=flops,
    hbm_bytes=hbm_bytes,
    make_inputs=make_inputs,
    smoke_problems=smoke_problems,
    model_problems=model_problems,
    plot=Plot(size="tokens"),
    check=Check(output=heads_joined, reference=joined_reference),
    bench=bench,
    torch=TORCH,
)
