"""The timer's sampling order (_core.round_order, the C ab_round_order used by time()).

A plain rotation kept every candidate right behind the same predecessor in every round, and a kernel
timed right after an identical one ran 2-4% faster on short shapes (benchmarks/NOTES.md, third session
of Kernels II). The order is now a Williams design; these tests check its two balance properties from
their definition, by counting.
"""
import collections

import pytest

from attnbench import _core


def cycle_rows(n):
    return [_core.round_order(n, r) for r in range(n if n % 2 == 0 else 2 * n)]


@pytest.mark.parametrize("n", range(1, 14))
def test_every_round_is_a_permutation(n):
    for row in cycle_rows(n):
        assert sorted(row) == list(range(n))


@pytest.mark.parametrize("n", range(1, 14))
def test_positions_balanced_over_a_cycle(n):
    rows = cycle_rows(n)
    per_cycle = len(rows) // n  # how often each candidate should sit at each position
    for pos in range(n):
        assert collections.Counter(row[pos] for row in rows) == {c: per_cycle for c in range(n)}


@pytest.mark.parametrize("n", range(2, 14))
def test_each_candidate_follows_each_other_equally_often(n):
    rows = cycle_rows(n)
    follows = collections.Counter((a, b) for row in rows for a, b in zip(row, row[1:]))
    expected = len(rows) // n  # n rows: every ordered pair once; 2n rows (n odd): twice
    assert set(follows) == {(a, b) for a in range(n) for b in range(n) if a != b}
    assert set(follows.values()) == {expected}


def test_cycles_repeat():
    for n in (3, 4, 7):
        period = n if n % 2 == 0 else 2 * n
        assert [_core.round_order(n, r) for r in range(period)] == \
            [_core.round_order(n, r) for r in range(period, 2 * period)]


@pytest.mark.parametrize("n, r", [(0, 0), (-1, 0), (3, -1)])
def test_bad_arguments(n, r):
    with pytest.raises(ValueError, match="round_order"):
        _core.round_order(n, r)
