"""attention: dense (prefill) attention with GQA, bottom-right causal mask, sliding window and softcap — the op
family, declared once (public function, rules, reference, workload, check, plot axes, GPU-bench baselines).

Per rank, a prefill of S tokens is one causal attention over the sequence (batch 1, Sq = Skv = S).
"""

from __future__ import annotations

import math

import numpy as np

from nkilab import reference
from nkilab.kernels import _backends, _checks
from nkilab.kernels._adapter import dtype_name, numpy_dtype, to_numpy, to_torch, zeros_like
from nkilab.kernels.ops import _attention_masks
from nkilab.kernels.ops._op import Launcher, Op, Plot, TorchOp
from nkilab.kernels.ops._problem import Problem
from nkilab.reference.dtypes import itemsize


def attention(q, k, v, *, causal=False, scale=None, sliding_window=None, softcap=None, key_padding_mask=None,
              cu_seqlens_q=None, cu_seqlens_k=None, backend="auto", out=None, target=None):
    """Dense (prefill) attention with GQA, bottom-right causal mask, sliding window and softcap; padded batches
    through a key-padding mask, packed variable-length sequences through cu_seqlens.

    Dimensions: B batch; Sq queries; Skv keys; Hq = g * Hkv heads; D head dim.

    Args:
        q: [B, Sq, Hq, D] float16|bfloat16|float32|float64.
        k, v: [B, Skv, Hkv, D], q's dtype; Hq % Hkv == 0, query head h reads kv head h // (Hq // Hkv).
        causal: query i sees keys j <= i + Skv - Sq.
        scale: score multiplier > 0; None = D ** -0.5.
        sliding_window: int >= 1, also hides keys j < i + Skv - Sq - w + 1; None = no window.
        softcap: c > 0, scores -> c * tanh(s / c) before masking; None = off.
        key_padding_mask: [B, Skv] bool like q (True = visible key, False = padding hidden from every query of its
            row; HF's attention_mask as bool). Every backend runs left padding (each row's visible keys a suffix,
            as HF generate pads); other masks run on the reference only (explicit other backend: ValueError).
        cu_seqlens_q, cu_seqlens_k: [num_seqs + 1] integer like q, 0 first, non-decreasing: varlen attention of
            sequences packed along axis 1 (q [1, Tq, Hq, D], k/v [1, Tk, Hkv, D], B = 1), sequence i's queries
            cu_seqlens_q[i]:[i + 1] over its keys cu_seqlens_k[i]:[i + 1] only, the rules above per sequence.
        backend: "reference" | "nki" | "triton" | "auto" (see nkilab.kernels.api).
        out: None, or an array like q (kind, shape, dtype, device) that receives the result (returned).
        target: Neuron target of the NKI backend ("inf2" | "trn1" | "trn2" | "trn3"); None = its default.

    Returns:
        out: [B, Sq, Hq, D], q's dtype and kind (the caller's `out` when given); a query that sees no key gets zeros.

    Raises:
        TypeError / ValueError: naming the argument, before any work (shapes, dtypes, GQA, options, backend).

    See Also:
        nkilab.reference.attention.attention, attention_varlen (the semantics, in float64);
        nkilab.kernels.ops._attention_masks (how masks and varlen run on the kernels).
    """
    options = check(q, k, v, causal=causal, scale=scale, sliding_window=sliding_window, softcap=softcap)
    _attention_masks.check(q, k, key_padding_mask, cu_seqlens_q, cu_seqlens_k)
    _checks.out_array(out, q, "q")
    problem = dict(head_dim=int(q.shape[3]), dtype=dtype_name(q), causal=options["causal"],
                   sliding_window=options["sliding_window"], softcap=options["softcap"], empty=_backends.empty(q, k))
    general = key_padding_mask is not None and _attention_masks.left_pad_starts(key_padding_mask) is None
    if general and backend not in ("reference", "auto"):
        raise ValueError(f"key_padding_mask: backend={backend!r} runs left-padding masks only (each row's visible keys "
                         "a suffix); this mask hides a key after a visible one; use backend='reference'")
    name, impl = _backends.choose(OP, "reference" if general else backend, problem, target=target)
    if general:  # the reference masks natively
        result = _run_reference(*(to_numpy(a) for a in (q, k, v)), key_padding_mask=to_numpy(key_padding_mask),
                                **options)
        return _backends.back(result, q, out)
    calls = _attention_masks.pieces(q, key_padding_mask, cu_seqlens_q, cu_seqlens_k)
    if len(calls) == 1 and calls[0] == (slice(None),) * 3:
        result = impl(*(_backends.to_backend(name, a) for a in (q, k, v)), **options)
        return _backends.back(result, q, out)
    result = zeros_like(q) if out is None else out
    if out is not None:
        result[...] = 0
    for rows, queries, keys in calls:
        pq, pk, pv = q[rows, queries], k[rows, keys], v[rows, keys]
        if math.prod(pq.shape) and pk.shape[1]:  # no query rows: nothing to do; no keys: the rows stay zero
            result[rows, queries] = _backends.back(impl(*(_backends.to_backend(name, a) for a in (pq, pk, pv)),
                                                        **options), q)
    return result


def check(q, k, v, *, causal, scale, sliding_window, softcap) -> dict:
    """Validate dense attention inputs; returns the normalized options (`_checks.attention_options`)."""
    _checks.arrays(q=q, k=k, v=v)
    _checks.ndim("q", q, 4, "[B, Sq, Hq, D]")
    _checks.ndim("k", k, 4, "[B, Skv, Hkv, D]")
    _checks.ndim("v", v, 4, "[B, Skv, Hkv, D]")
    _checks.float_dtype("q", q)
    _checks.same_dtype("q, k, v", q, k, v)
    if tuple(k.shape) != tuple(v.shape):
        raise ValueError(f"v: shape must equal k's {tuple(k.shape)}, got {tuple(v.shape)}")
    b, _, hq, d = q.shape
    if k.shape[0] != b:
        raise ValueError(f"k: batch B={k.shape[0]} must equal q's B={b}")
    if k.shape[3] != d:
        raise ValueError(f"k: head_dim D={k.shape[3]} must equal q's D={d}")
    _checks.heads(hq, k.shape[2], "q", "k")
    _checks.head_dim("q", d)
    return _checks.attention_options(causal, scale, sliding_window, softcap, d)


def _run_reference(q, k, v, **options):
    return reference.attention(q, k, v, **options).astype(q.dtype)  # options may carry key_padding_mask


# --- workload -----------------------------------------------------------------------------------------------------


def visible_pairs(sq: int, skv: int, causal: bool, window: int | None) -> int:
    """(query, key) pairs that pass the bottom-right causal mask and the sliding window."""
    total = 0
    for i in range(sq):
        hi = i + skv - sq if causal else skv - 1
        lo = i + skv - sq - window + 1 if window else 0
        total += max(0, min(hi, skv - 1) - max(lo, 0) + 1)
    return total


def spec(problem: Problem) -> dict:
    p = problem.params
    return dict(head_dim=p["head_dim"], dtype=problem.dtype, causal=p["causal"],
                sliding_window=p.get("sliding_window"), softcap=p.get("softcap"))


def flops(problem: Problem) -> float:
    """4·D per visible (query, key) pair per head (Q·K and P·V)."""
    p = problem.params
    pairs = visible_pairs(p["sq"], p["skv"], p["causal"], p.get("sliding_window"))
    return 4.0 * p["b"] * p["hq"] * pairs * p["head_dim"]


def hbm_bytes(problem: Problem) -> float:
    """q read and out written (Hq heads), k and v read (Hkv heads)."""
    p = problem.params
    act = itemsize(problem.dtype)
    return act * p["head_dim"] * p["b"] * (2 * p["sq"] * p["hq"] + 2 * p["skv"] * p["hkv"])


def make_inputs(problem: Problem, rng: np.random.Generator, zeros: bool):
    """(q, k, v) standard normal (zeros in trace mode); causal / window / softcap as keywords."""
    p, dt = problem.params, numpy_dtype(problem.dtype)
    b, sq, skv, hq, hkv, d = p["b"], p["sq"], p["skv"], p["hq"], p["hkv"], p["head_dim"]
    arrays = [np.zeros(shape, dt) if zeros else rng.standard_normal(shape).astype(dt)
              for shape in ((b, sq, hq, d), (b, skv, hkv, d), (b, skv, hkv, d))]
    return tuple(arrays), dict(causal=p["causal"], sliding_window=p.get("sliding_window"), softcap=p.get("softcap"))


def smoke_problems(dtype: str) -> list[Problem]:
    """Causal GQA with Sq < Skv; a batch of two with a window and a softcap."""
    return [
        Problem(OP, "smoke/attention/causal-gqa", "smoke",
                dict(b=1, sq=40, skv=72, hq=4, hkv=2, head_dim=64, causal=True, sliding_window=None, softcap=None),
                dtype, 40, "smoke"),
        Problem(OP, "smoke/attention/window-softcap", "smoke",
                dict(b=2, sq=33, skv=33, hq=2, hkv=1, head_dim=64, causal=True, sliding_window=16, softcap=30.0),
                dtype, 66, "smoke"),
    ]


def model_problems(model, phase: str, grid: dict, quant, dtype: str) -> list[Problem]:
    """Prefill only: causal attention over each prefill length (the model's sliding window, if any)."""
    if phase != "prefill":
        return []
    return [Problem(OP, f"{model.name}/prefill/attention/s{s}", phase,
                    dict(b=1, sq=s, skv=s, hq=model.q_heads_per_rank, hkv=model.kv_heads_per_rank,
                         head_dim=model.head_dim, causal=True, sliding_window=model.sliding_window, softcap=None),
                    dtype, s, model.name)
            for s in grid["prefill"]]


# --- GPU bench: torch baseline and the float64 truth on the device --------------------------------------------------


def attention_torch(q, k, v, *, causal, scale, sliding_window=None, softcap=None, dtype):
    """The reference's attention of one sequence in torch `dtype` (float64 = the truth on the GPU; bfloat16 = the naive
    working-precision run): q [Sq, Hq, D], k/v [Skv, Hkv, D] -> [Sq, Hq, D]. The float64 NumPy reference would take
    minutes at prefill shapes; this is the same formula (nkilab.reference.attention) on the device."""
    import torch  # optional heavy dependency: only the GPU bench calls this

    sq, hq, _ = q.shape
    skv, hkv, _ = k.shape
    group = hq // hkv
    qh = q.to(dtype).transpose(0, 1)
    kh = k.to(dtype).repeat_interleave(group, dim=1).transpose(0, 1)
    vh = v.to(dtype).repeat_interleave(group, dim=1).transpose(0, 1)
    s = (qh @ kh.transpose(1, 2)) * scale
    if softcap is not None:
        s = softcap * torch.tanh(s / softcap)
    i = torch.arange(sq, device=q.device)[:, None]
    j = torch.arange(skv, device=q.device)[None, :]
    diagonal = i + skv - sq
    visible = torch.ones(sq, skv, dtype=torch.bool, device=q.device)
    if causal:
        visible &= j <= diagonal
    if sliding_window is not None:
        visible &= j >= diagonal - sliding_window + 1
    s = s.masked_fill(~visible, float("-inf"))
    # Softmax accumulates in fp32 for 16-bit work (as the NumPy reference does), in float64 for the truth.
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    p = torch.softmax(s.to(acc), dim=-1).nan_to_num(0.0).to(dtype)  # fully masked rows: NaN -> 0
    return (p @ vh).transpose(0, 1)


def sdpa(q, k, v, *, causal):
    """torch SDPA on [B, H, S, D] views; GQA through `enable_gqa` (torch >= 2.5)."""
    import torch.nn.functional as F  # optional heavy dependency: only the GPU bench calls this

    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=q.shape[1] != k.shape[1])


def bench(problem: Problem, device, cache: dict):
    """(cases, truth) of the GPU bench: Triton and, without window or softcap and with Sq = Skv, torch SDPA."""
    import torch  # optional heavy dependency: only the GPU bench calls this

    triton_attention = _backends.load(OP, "triton")[0]
    (q, k, v), opts = make_inputs(problem, np.random.default_rng(0), False)
    q, k, v = (to_torch(a, device=device) for a in (q, k, v))
    scale = q.shape[-1] ** -0.5
    qt, kt, vt = (a.transpose(1, 2) for a in (q, k, v))
    cases = [("triton", lambda: triton_attention(q, k, v, scale=scale, **opts))]
    if opts["sliding_window"] is None and opts["softcap"] is None and q.shape[1] == k.shape[1]:
        cases.append(("torch SDPA", lambda: sdpa(qt, kt, vt, causal=opts["causal"])))

    def truth():
        def run(dtype):
            return torch.stack([attention_torch(q[b], k[b], v[b], scale=scale, dtype=dtype, **opts)
                                for b in range(q.shape[0])])

        return run(torch.float64), run(q.dtype)

    return cases, truth


# torch.ops.nkilab.<op> (nkilab.kernels.torch_ops): the public function's arguments as a torch.library schema
_TORCH_ARGS = ("Tensor q, Tensor k, Tensor v, *, bool causal=False, float? scale=None, int? sliding_window=None, "
               "float? softcap=None, Tensor? key_padding_mask=None, Tensor? cu_seqlens_q=None, "
               "Tensor? cu_seqlens_k=None, str backend='auto', str? target=None")
TORCH = TorchOp.like_first(_TORCH_ARGS)


OP = Op(
    name="attention",
    order=20,
    api=attention,
    reference=reference.attention,
    run_reference=_run_reference,
    backends={"nki": Launcher("nkilab.kernels.nki.launch_attention", "attention"),
              "triton": Launcher("nkilab.kernels.triton.attention", "attention")},
    spec=spec,
    flops=flops,
    hbm_bytes=hbm_bytes,
    make_inputs=make_inputs,
    smoke_problems=smoke_problems,
    model_problems=model_problems,
    plot=Plot(size="sq"),
    bench=bench,
    torch=TORCH,
)
