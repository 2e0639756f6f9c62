"""Which rows each rank reads in an epoch, and what a checkpoint has consumed: pure functions.

A dataset's rows have stable global ids: its pieces (a streaming conversion's partitions, a
materialized one's blocks) in order, row `i` of piece `p` at `start(p) + i`. An epoch reads what
is left of it (all rows at the start, fewer after a resume) as segments (piece, a, b), in a
seeded order of pieces; rank `r` of `w` gets the `r`-th contiguous `1/w` of those rows, cut into
the same number of batches on every rank (ranks that step together must not run out at
different times). So the plan is a function of (rows left, seed, epoch, world size, batch size),
and rank 0 alone can say what every rank has consumed after `k` batches: that is what a
checkpoint records. A restart, with any world size, plans the rows left again: every row of
the epoch is read exactly once over the attempts that contributed to the checkpoint.
"""

from __future__ import annotations

import bisect
import dataclasses
import random

Ranges = list[tuple[int, int]]   # sorted, disjoint, non-empty [a, b) row ranges


def merge(ranges) -> Ranges:
    """`ranges` (any order, overlapping or touching) as sorted disjoint ranges."""
    out: Ranges = []
    for a, b in sorted((int(a), int(b)) for a, b in ranges if b > a):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def subtract(whole: Ranges, taken: Ranges) -> Ranges:
    """The rows of `whole` not in `taken` (both merged)."""
    out: Ranges = []
    taken = merge(taken)
    for a, b in merge(whole):
        for ta, tb in taken:
            if tb <= a or ta >= b:
                continue
            if ta > a:
                out.append((a, ta))
            a = max(a, tb)
            if a >= b:
                break
        if a < b:
            out.append((a, b))
    return out


def count(ranges: Ranges) -> int:
    return sum(b - a for a, b in ranges)


@dataclasses.dataclass(frozen=True)
class Segment:
    """Rows [a, b) (global ids) of piece `piece`."""

    piece: int
    a: int
    b: int

    @property
    def rows(self) -> int:
        return self.b - self.a


def segments(left: Ranges, starts: list[int], total: int) -> list[Segment]:
    """`left` cut at piece boundaries (`starts`: each piece's first global row, ascending)."""
    out = []
    for a, b in merge(left):
        a, b = max(a, 0), min(b, total)
        while a < b:
            piece = bisect.bisect_right(starts, a) - 1
            end = starts[piece + 1] if piece + 1 < len(starts) else total
            out.append(Segment(piece, a, min(b, end)))
            a = min(b, end)
    return out


def ordered(segs: list[Segment], seed: int | None, epoch: int) -> list[Segment]:
    """Pieces in a seeded order per epoch (rows within a piece keep their order); as is without a seed."""
    if seed is None:
        return segs
    pieces = sorted({s.piece for s in segs})
    random.Random(f"{seed}:{epoch}").shuffle(pieces)
    rank = {p: i for i, p in enumerate(pieces)}
    return sorted(segs, key=lambda s: (rank[s.piece], s.a))


def _take(segs: list[Segment], skip: int, rows: int) -> list[Segment]:
    """`rows` rows of the concatenation of `segs`, after the first `skip`."""
    out = []
    for s in segs:
        if rows <= 0:
            break
        if skip >= s.rows:
            skip -= s.rows
            continue
        a = s.a + skip
        b = min(s.b, a + rows)
        out.append(Segment(s.piece, a, b))
        rows -= b - a
        skip = 0
    return out


@dataclasses.dataclass(frozen=True)
class EpochPlan:
    """One epoch's split over `world_size` ranks, in `num_batches` batches on every rank."""

    segments: tuple[Segment, ...]   # the rows left, in this epoch's order
    world_size: int
    batch_size: int

    @staticmethod
    def make(left: Ranges, starts: list[int], total: int, seed: int | None, epoch: int, world_size: int,
             batch_size: int) -> EpochPlan:
        if world_size < 1 or batch_size < 1:
            raise ValueError(f"world size and batch size must be >= 1, not {world_size} and {batch_size}")
        return EpochPlan(tuple(ordered(segments(left, starts, total), seed, epoch)), world_size, batch_size)

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.segments)

    def rank_rows(self, rank: int) -> tuple[int, int]:
        """(first, count) of rank's rows in the epoch's order."""
        n, w = self.rows, self.world_size
        return rank * n // w, (rank + 1) * n // w - rank * n // w

    @property
    def num_batches(self) -> int:
        most = max(self.rank_rows(r)[1] for r in range(self.world_size))
        return -(-most // self.batch_size)

    def batch(self, rank: int, i: int) -> list[Segment]:
        """Rank's batch `i` (0-based): rows [i*n/B, (i+1)*n/B) of its share, so no batch is larger
        than batch_size and every rank has the same number of batches."""
        first, n = self.rank_rows(rank)
        b = self.num_batches
        lo, hi = i * n // b, (i + 1) * n // b
        return _take(list(self.segments), first + lo, hi - lo)

    def consumed(self, batches: int) -> Ranges:
        """The rows every rank has consumed after its first `batches` batches."""
        b = self.num_batches
        if b == 0:
            return []
        batches = min(batches, b)
        out = []
        for rank in range(self.world_size):
            first, n = self.rank_rows(rank)
            out += [(s.a, s.b) for s in _take(list(self.segments), first, batches * n // b)]
        return merge(out)
