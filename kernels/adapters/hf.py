"""Hugging Face transformers on nkilab's kernels: an attention function for `AttentionInterface`, and quantized
linear layers.

    from nkilab.kernels.adapters import hf
    hf.register(backend="nki")                       # attn_implementation "nkilab" (and its mask function)
    model = LlamaForCausalLM.from_pretrained(..., attn_implementation="nkilab")
    hf.quantize_linears(model, "int8")               # every nn.Linear but lm_head -> QuantizedLinear (qmatmul)

The attention function receives HF's layout (query [B, Hq, Sq, D], key / value [B, Hkv, Skv, D], GQA unrepeated)
and returns [B, Sq, Hq, D], like HF's own functions. Padding: HF builds no mask for an attention implementation
without a mask function, so `register` also registers one. For the plain causal pattern it hands the attention the
2-D key-padding mask ([B, Skv] bool, False = padding) instead of a 4-D one; `nkilab.kernels.attention` runs left
padding (what generate makes for decoder-only models) on every backend. Any other pattern (sliding windows, packed
sequences, offsets a static cache makes) gets HF's own 4-D boolean mask, which the attention function checks is
causal (and windowed) plus key padding, and refuses otherwise (ValueError: nkilab's attention takes no arbitrary
masks).

Importing it with this repo's root on sys.path (`python` started there: `python -m ...`, `python -c`) while the PyPI
`kernels` package is installed (transformers >= 5.25 depends on it and imports it) raises ImportError naming the fix:
the root's `kernels/` would shadow that package.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os

import torch

import nkilab.kernels


def _check_kernels_not_shadowed() -> None:
    """ImportError when the `kernels` package is installed (transformers then imports it) but the top-level name
    `kernels` resolves to nkilab's own `kernels/` directory."""
    try:
        importlib.metadata.distribution("kernels")
    except importlib.metadata.PackageNotFoundError:
        return
    spec = importlib.util.find_spec("kernels")
    own = {os.path.realpath(p) for p in nkilab.kernels.__path__}
    if spec is not None and spec.origin and os.path.realpath(os.path.dirname(spec.origin)) in own:
        raise ImportError(f"this repo's root is on sys.path, so its kernels/ ({spec.origin}) shadows the `kernels` "
                          "package transformers imports: start python outside the repo root, or with -P")


_check_kernels_not_shadowed()

from transformers import AttentionInterface  # noqa: E402  (after the check: a shadowed `kernels` breaks this import)
from transformers.masking_utils import AttentionMaskInterface, causal_mask_function, sdpa_mask  # noqa: E402

from nkilab.kernels.ops.qmatmul import torch_weight_args
from nkilab.reference.attention import visible_keys
from nkilab.reference.quant_import import quantize_linear

import nkilab.kernels.torch_ops  # noqa: F401,I001  (registers torch.ops.nkilab)

OPS = torch.ops.nkilab
NAME = "nkilab"


def register(name: str = NAME, backend: str = "auto") -> str:
    """Register the attention function and its mask function under `name` (models then take
    attn_implementation=name), running on nkilab backend `backend`; returns `name`."""

    def attention(module, query, key, value, attention_mask, **kwargs):
        return attention_forward(module, query, key, value, attention_mask, backend=backend, **kwargs)

    AttentionInterface.register(name, attention)
    AttentionMaskInterface.register(name, key_padding_mask)
    return name


def key_padding_mask(batch_size: int, q_length: int, kv_length: int, q_offset=0, kv_offset: int = 0,
                     mask_function=causal_mask_function, attention_mask=None, allow_is_causal_skip=True, **kwargs):
    """HF mask function: the 2-D key-padding mask [B, kv_length] bool (None without padding information) when the
    pattern is causal with bottom-right alignment (kv_length - q_length = q_offset - kv_offset, a growing cache);
    HF's 4-D boolean mask otherwise."""
    plain = (mask_function is causal_mask_function and isinstance(q_offset, int)
             and kv_length - q_length == q_offset - kv_offset)
    if not plain:
        return sdpa_mask(batch_size=batch_size, q_length=q_length, kv_length=kv_length, q_offset=q_offset,
                         kv_offset=kv_offset, mask_function=mask_function, attention_mask=attention_mask,
                         allow_is_causal_skip=False, **kwargs)
    if attention_mask is None:
        return None
    return attention_mask[:, kv_offset:kv_offset + kv_length].to(torch.bool)


def _padding_of(mask4d: torch.Tensor, sq: int, skv: int, causal: bool, window: int | None) -> torch.Tensor:
    """The key-padding mask [B, Skv] a 4-D boolean mask [B, 1, Sq, Skv] is made of; ValueError when the mask is not
    the (windowed) bottom-right causal pattern restricted to it (rows that see no key are not compared: their output
    is zeros either way)."""
    if mask4d.dtype != torch.bool or mask4d.shape[1] != 1 or tuple(mask4d.shape[2:]) != (sq, skv):
        raise ValueError(f"attention_mask: expected a boolean [B, 1, {sq}, {skv}] mask, got {mask4d.dtype} "
                         f"{tuple(mask4d.shape)}")
    pattern = torch.from_numpy(visible_keys(sq, skv, causal=causal, sliding_window=window)).to(mask4d.device)
    padding = (mask4d[:, 0] & pattern).any(dim=1)  # a key visible to some query is not padding
    rebuilt = pattern[None] & padding[:, None, :]
    seen = mask4d[:, 0].any(dim=-1, keepdim=True)
    if not torch.equal(rebuilt & seen, mask4d[:, 0] & seen):
        raise ValueError("attention_mask: nkilab's attention takes causal / sliding-window masks plus key padding; "
                         "this mask is another pattern")
    return padding


def attention_forward(module, query, key, value, attention_mask, *, scaling=None, dropout=0.0, sliding_window=None,
                      softcap=None, is_causal=None, backend="auto", **kwargs):
    """The HF attention function (`AttentionInterface` signature) on `torch.ops.nkilab.attention`.

    Args:
        module: the HF attention module (its `is_causal`, default True).
        query: [B, Hq, Sq, D]; key, value: [B, Hkv, Skv, D].
        attention_mask: None, a [B, Skv] key-padding mask (`key_padding_mask`), or a 4-D boolean mask.
        scaling, sliding_window, softcap, is_causal: HF's keyword arguments; dropout must be 0 (inference).

    Returns:
        (out [B, Sq, Hq, D], None): no attention weights.
    """
    if dropout:
        raise ValueError(f"dropout: nkilab's attention is for inference, got dropout={dropout}")
    causal = bool(getattr(module, "is_causal", True) if is_causal is None else is_causal)
    q, k, v = (t.transpose(1, 2).contiguous() for t in (query, key, value))  # HF's [B, H, S, D] -> [B, S, H, D]
    padding = attention_mask
    if attention_mask is not None and attention_mask.ndim == 4:
        padding = _padding_of(attention_mask, q.shape[1], k.shape[1], causal, sliding_window)
    out = OPS.attention(q, k, v, causal=causal, scale=scaling, sliding_window=sliding_window, softcap=softcap,
                        key_padding_mask=padding, backend=backend)
    return out, None


class QuantizedLinear(torch.nn.Module):
    """An nn.Linear whose weight is a QuantizedWeight: y = qmatmul(x, W) + bias on `torch.ops.nkilab.qmatmul`.

    The weight lives in buffers (w_data, w_scales, w_zeros: `torch_weight_args`), so `.to(device)` and state dicts
    carry it; x is [..., K] of any float dtype the backend takes, y [..., N] in x's dtype.
    """

    def __init__(self, qw, bias: torch.Tensor | None = None, backend: str = "auto"):
        super().__init__()
        data, scales, zeros, self.scheme, self.group_size, self.symmetric = torch_weight_args(qw)
        self.in_features, self.out_features = qw.shape
        self.register_buffer("w_data", data)
        self.register_buffer("w_scales", scales)
        self.register_buffer("w_zeros", zeros)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.backend = backend

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, scheme: str, group_size: int | None = None,
                    symmetric: bool = True, backend: str = "auto") -> "QuantizedLinear":
        """`linear` quantized (`nkilab.reference.quant_import.quantize_linear`), its bias kept."""
        return cls(quantize_linear(linear, scheme, group_size, symmetric), linear.bias, backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        y = OPS.qmatmul(rows, self.w_data, self.w_scales, self.w_zeros, self.scheme, self.group_size,
                        self.symmetric, backend=self.backend)
        y = y.reshape(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, scheme={self.scheme}, "
                f"group_size={self.group_size}, backend={self.backend!r}")


def quantize_linears(model: torch.nn.Module, scheme: str, group_size: int | None = None, symmetric: bool = True,
                     backend: str = "auto", skip: tuple[str, ...] = ("lm_head",)) -> torch.nn.Module:
    """Replace every nn.Linear of `model` whose name's last part is not in `skip` by a QuantizedLinear, in place;
    returns `model`."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear) and child_name not in skip:
                setattr(module, child_name, QuantizedLinear.from_linear(child, scheme, group_size, symmetric, backend))
    return model
