"""The attention of nkilab.reference.attention's docstring written out one (batch, query, head) row at a time: the
tests' independent truth."""

import math

import numpy as np


def brute_force_attention(q, k, v, *, causal, scale=None, sliding_window=None, softcap=None):
    """That attention written out one query row at a time with Python scalars (independent of the reference)."""
    b_, sq, hq, d = q.shape
    skv, hkv = k.shape[1], k.shape[2]
    scale = d**-0.5 if scale is None else scale
    out = np.zeros(q.shape)
    for b in range(b_):
        for i in range(sq):
            for h in range(hq):
                kvh = h // (hq // hkv)
                scores = {}
                for j in range(skv):
                    if causal and j > i + skv - sq:
                        continue
                    if sliding_window is not None and j < i + skv - sq - sliding_window + 1:
                        continue
                    s = scale * float(np.dot(q[b, i, h].astype(np.float64), k[b, j, kvh].astype(np.float64)))
                    scores[j] = softcap * math.tanh(s / softcap) if softcap is not None else s
                if not scores:
                    continue  # fully masked row -> zeros
                top = max(scores.values())
                weights = {j: math.exp(s - top) for j, s in scores.items()}
                total = sum(weights.values())
                for j, w in weights.items():
                    out[b, i, h] += (w / total) * v[b, j, kvh].astype(np.float64)
    return out
