"""`NkiTensor.rearrange`: einops-style views (S-NL) as a split, a permute and a merge of dims.

`src_pattern` names the tensor's dims (a tuple of names splits a dim), `dst_pattern` orders the names (a tuple
merges them); `fixed_sizes` gives split sizes, one unknown per group inferred. No data moves (the view's
strides must allow each reshape). Example: [128, 24] with ('b', ('h', 'w')) -> ('b', 'w', 'h'), {'h': 4}
gives [128, 6, 4].
"""

from __future__ import annotations

import math

from .errors import NkiValidationError


def _group(item) -> tuple:
    return tuple(item) if isinstance(item, (tuple, list)) else (item,)


def rearrange_plan(shape: tuple, src_pattern, dst_pattern, fixed_sizes=None) -> tuple[list, list, list]:
    """(split shape, permutation of the split dims, merged shape) realising the rearrangement.

    Raises:
        NkiValidationError: a pattern does not match the shape, or the sizes do not split a dim.
    """
    sizes = dict(fixed_sizes or {})
    if len(src_pattern) != len(shape):
        raise NkiValidationError("rearrange", "src_pattern", f"{len(shape)} entries (one per dim)", src_pattern)
    names, split = [], []
    for d, (n, item) in enumerate(zip(shape, src_pattern)):
        group = _group(item)
        unknown = [g for g in group if g not in sizes]
        known = math.prod(sizes[g] for g in group if g in sizes)
        if len(unknown) > 1 or (unknown and n % known) or (not unknown and known != n):
            raise NkiValidationError("rearrange", "fixed_sizes", f"sizes splitting dim {d} ({n}) with at most "
                                     "one unknown", {g: sizes.get(g) for g in group})
        if unknown:
            sizes[unknown[0]] = n // known
        names += group
        split += [sizes[g] for g in group]
    flat = [g for item in dst_pattern for g in _group(item)]
    if sorted(flat) != sorted(names) or len(set(names)) != len(names):
        raise NkiValidationError("rearrange", "dst_pattern", f"each of {names} once", dst_pattern)
    return split, [names.index(g) for g in flat], [math.prod(sizes[g] for g in _group(i)) for i in dst_pattern]
