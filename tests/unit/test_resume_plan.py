"""The resumable iterator's epoch plan: every row of an epoch once over any chain of attempts
(failures after any number of batches, a different world size on each restart), the same number
of batches on every rank, no batch above batch_size, and one plan per (rows left, seed, epoch,
world size)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from ftbridge.train.plan import EpochPlan, count, merge, subtract


def _starts(sizes: list[int]) -> tuple[list[int], int]:
    starts, total = [], 0
    for n in sizes:
        starts.append(total)
        total += n
    return starts, total


def _rows(plan: EpochPlan, rank: int, batches: int) -> list[int]:
    return [i for b in range(batches) for s in plan.batch(rank, b) for i in range(s.a, s.b)]


sizes = st.lists(st.integers(0, 40), min_size=1, max_size=12)
attempt = st.tuples(st.integers(1, 5), st.floats(0, 1))   # (world size, share of the batches done before the failure)


@settings(max_examples=300, deadline=None)
@given(sizes, st.lists(attempt, min_size=0, max_size=4), st.integers(1, 2), st.integers(1, 17),
       st.one_of(st.none(), st.integers(0, 3)), st.integers(0, 5))
def test_every_row_once_over_the_attempts_that_contributed(piece_sizes, failures, final_world, batch_size, seed, epoch):
    starts, total = _starts(piece_sizes)
    done: list = []
    seen: Counter = Counter()
    for world, share in failures:  # each attempt checkpoints after k batches, then dies (later rows are redone)
        plan = EpochPlan.make(subtract([(0, total)], done), starts, total, seed, epoch, world, batch_size)
        k = int(share * plan.num_batches)
        for rank in range(world):
            seen.update(_rows(plan, rank, k))
        done = merge(done + plan.consumed(k))
        assert {i for a, b in done for i in range(a, b)} == set(seen) and count(done) == sum(seen.values())
    plan = EpochPlan.make(subtract([(0, total)], done), starts, total, seed, epoch, final_world, batch_size)
    for rank in range(final_world):
        mine = _rows(plan, rank, plan.num_batches)
        assert len(mine) == len(set(mine)), "a rank saw a row twice within the final attempt"
        seen.update(mine)
    assert sorted(seen) == list(range(total)) and set(seen.values()) <= {1}


@settings(max_examples=200, deadline=None)
@given(sizes, st.integers(1, 6), st.integers(1, 17), st.one_of(st.none(), st.integers(0, 3)))
def test_ranks_step_together_and_batches_stay_small(piece_sizes, world, batch_size, seed):
    starts, total = _starts(piece_sizes)
    plan = EpochPlan.make([(0, total)], starts, total, seed, 0, world, batch_size)
    for rank in range(world):
        lengths = [sum(s.rows for s in plan.batch(rank, b)) for b in range(plan.num_batches)]
        assert all(n <= batch_size for n in lengths)
        assert sum(lengths) == plan.rank_rows(rank)[1]
        for b in range(plan.num_batches):  # a batch's segments stay inside their piece
            for s in plan.batch(rank, b):
                end = starts[s.piece + 1] if s.piece + 1 < len(starts) else total
                assert starts[s.piece] <= s.a < s.b <= end
    assert plan.consumed(plan.num_batches) == ([(0, total)] if total else [])


def test_the_plan_is_a_function_of_seed_epoch_and_world():
    starts, total = _starts([10] * 20)
    one = EpochPlan.make([(0, total)], starts, total, 7, 3, 4, 8)
    assert one == EpochPlan.make([(0, total)], starts, total, 7, 3, 4, 8)
    assert one != EpochPlan.make([(0, total)], starts, total, 7, 4, 4, 8)  # another epoch, another order
    unshuffled = EpochPlan.make([(0, total)], starts, total, None, 3, 4, 8)
    assert [s.piece for s in unshuffled.segments] == list(range(20))
    assert sorted(s.piece for s in one.segments) == list(range(20))


def test_ranges():
    assert merge([(5, 7), (0, 2), (2, 3), (6, 9), (4, 4)]) == [(0, 3), (5, 9)]
    assert subtract([(0, 10)], [(2, 3), (5, 7), (9, 12)]) == [(0, 2), (3, 5), (7, 9)]
    assert subtract([(0, 10)], []) == [(0, 10)] and subtract([(0, 10)], [(0, 10)]) == []
