"""`pieces_per_row`: the fewest equal pieces that fill the partitions, within the piece-size bounds."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nkilab.kernels.nki._split import pieces_per_row
from nkilab.kernels.nki._tiling import PMAX


@pytest.mark.parametrize("rows, units, max_piece, min_piece, min_tiles, expected", [
    (8, 32, 32, 1, 1, 16),  # 8 tokens x 16 head groups = 128 partitions
    (256, 32, 32, 1, 1, 1),  # already full: whole rows
    (1, 8, 32, 1, 1, 8),  # cannot fill: the most pieces
    (2048, 14336, 4096, 128, 2, 4),  # full, but a piece must fit 4096
    (32, 14336, 4096, 128, 2, 8),  # two tiles of 128 partitions
    (1, 14336, 4096, 128, 2, 112),  # pieces stop at 128 units
    (5, 67, 4096, 128, 2, 1),  # too short to cut
    (3, 20011, 4096, 128, 1, 1),  # a prime past max_piece: no divisor fits, the row stays whole
])
def test_choices(rows, units, max_piece, min_piece, min_tiles, expected):
    assert pieces_per_row(rows, units, max_piece, min_piece, min_tiles) == expected


@given(rows=st.integers(1, 300), units=st.integers(1, 5000), max_piece=st.integers(1, 5000),
       min_piece=st.integers(1, 200), min_tiles=st.integers(1, 4))
def test_properties(rows, units, max_piece, min_piece, min_tiles):
    k = pieces_per_row(rows, units, max_piece, min_piece, min_tiles)
    assert 1 <= k <= PMAX and units % k == 0 and (k == 1 or units // k >= min_piece)
    fits = [d for d in range(1, min(units, PMAX) + 1) if units % d == 0 and (d == 1 or units // d >= min_piece)
            and units // d <= max_piece]
    if fits:
        assert units // k <= max_piece
        filled = [d for d in fits if rows * d >= PMAX * min_tiles]
        assert k == (filled[0] if filled else fits[-1])
