"""What an augmentation run produces, decided before any translation: how many synthetic slices
per class (`synthetic_count`), from which real slices (`sample_positions`), grouped into chunks
that are committed, and skipped on a re-run, one at a time.

The ratio arithmetic and the sampler are `ssagan_tf.synthetic`'s, shared with the evaluation's
synthetic arms, so `run_evaluate.py` at seed s trains on the slices `run_augment.py --seed=s`
writes. The generator is deterministic, so repeats of a source are identical slices. With ratio
None every source slice is translated exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssagan_tf.data.schema import SOURCE_DOMAIN, TARGET_DOMAIN
from ssagan_tf.synthetic import STREAMS, select_sources, synthetic_count


@dataclass(frozen=True)
class Item:
    """One synthetic slice to make: the `replicate`-th use of source slice `ref` in `direction`."""

    direction: str
    ref: object          # sources.SliceRef
    replicate: int

    @property
    def target_domain(self) -> str:
        return TARGET_DOMAIN[self.direction]


@dataclass(frozen=True)
class Chunk:
    """A unit of work committed atomically: `index` of `count` chunks of its direction."""

    direction: str
    index: int
    count: int
    items: tuple
    case_id: str | None = None      # NIfTI chunks hold one source case

    @property
    def name(self) -> str:
        return f"{self.direction}-{self.index:05d}"

    @property
    def positions(self) -> np.ndarray:
        return np.asarray([item.ref.position for item in self.items], np.int64)


def plan_direction(direction: str, refs: list, real_target: int, ratio, seed: int) -> list:
    """The items of one direction in source order (repeats adjacent)."""
    count = synthetic_count(ratio, real_target, len(refs))
    if count and not refs:
        raise ValueError(f"{direction}: {count} synthetic {TARGET_DOMAIN[direction]} slices requested "
                         f"({ratio} x {real_target} real), but the input has no {SOURCE_DOMAIN[direction]} slices "
                         "to translate; leave this direction out (--directions)")
    positions = select_sources(len(refs), count, seed, STREAMS[direction])
    items, previous, replicate = [], None, 0
    for position in positions.tolist():
        replicate = replicate + 1 if position == previous else 0
        items.append(Item(direction, refs[position], replicate))
        previous = position
    return items


def make_chunks(direction: str, items: list, chunk_size: int, per_case: bool) -> list:
    """Consecutive runs of `chunk_size` items, or (NIfTI) one chunk per source case, cases in order
    of first appearance and each case's items by slice index."""
    if per_case:
        groups = {}
        for item in items:
            groups.setdefault(item.ref.case_id, []).append(item)
        parts = [(case, sorted(group, key=lambda it: (it.ref.slice_index, it.ref.position, it.replicate)))
                 for case, group in groups.items()]
    else:
        parts = [(None, items[i:i + chunk_size]) for i in range(0, len(items), chunk_size)]
    return [Chunk(direction, i, len(parts), tuple(group), case) for i, (case, group) in enumerate(parts)]


def build_plan(source, directions, ratio, seed: int, chunk_size: int, per_case: bool) -> list:
    """All chunks of a run, direction by direction."""
    chunks = []
    for direction in directions:
        refs = source.refs(SOURCE_DOMAIN[direction])
        real_target = len(source.refs(TARGET_DOMAIN[direction])) if ratio is not None else 0
        items = plan_direction(direction, refs, real_target, ratio, seed)
        chunks += make_chunks(direction, items, chunk_size, per_case)
    return chunks
