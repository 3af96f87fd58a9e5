"""ssagan_tf/synthetic.py: the ratio arithmetic and the seeded source selection that augmentation
and the evaluation share."""

from types import SimpleNamespace

import numpy as np
import pytest

from ssagan_tf import synthetic


@pytest.mark.parametrize("ratio, real, expected", [
    (0.5, 4, 2), (0.5, 3, 2), (1.0, 4, 4), (2.0, 4, 8), (3.0, 5, 15),
    (0.5, 5, 3),      # 2.5: half up gives 3, half to even (Python's round) would give 2
    (2.5, 1, 3),      # 2.5 again, and 0.5 x 1 = 0.5 -> 1 below
    (0.5, 1, 1), (1.5, 3, 5)])   # 4.5 -> 5 (half to even: 4)
def test_synthetic_count_is_ratio_times_real_rounded_half_up(ratio, real, expected):
    assert synthetic.synthetic_count(ratio, real) == expected


def test_ratio_none_translates_every_source_once():
    assert synthetic.synthetic_count(None, 4, sources=6) == 6


def test_selection_is_seeded_per_stream():
    first = synthetic.select_sources(50, 20, seed=3, stream=0)
    assert np.array_equal(first, synthetic.select_sources(50, 20, seed=3, stream=0))
    assert not np.array_equal(first, synthetic.select_sources(50, 20, seed=4, stream=0))
    assert not np.array_equal(first, synthetic.select_sources(50, 20, seed=3, stream=1))


def test_selection_is_distinct_then_balanced():
    few = synthetic.select_sources(6, 4, seed=3, stream=0)
    assert len(set(few.tolist())) == 4 and list(few) == sorted(few)
    many = synthetic.select_sources(6, 15, seed=3, stream=0)
    uses = np.bincount(many, minlength=6)
    assert uses.sum() == 15 and set(uses.tolist()) == {2, 3}       # floor(15/6) or one more, none left out
    assert synthetic.select_sources(0, 0, seed=0, stream=0).size == 0
    with pytest.raises(ValueError, match="empty source class"):
        synthetic.select_sources(0, 3, seed=0, stream=0)


@pytest.mark.parametrize("ratio", [0.5, 1.0, 2.0, 3.0])
def test_evaluation_trains_on_the_slices_augmentation_writes(ratio):
    """At one seed and ratio, the evaluation's synthetic arm and run_augment's plan pick the same
    source slices, the same number of times, in both directions."""
    from ssagan_tf.augment.plan import plan_direction
    from ssagan_tf.evaluation import arms
    from ssagan_tf.exported import Translation

    n_normal, n_tumor, seed = 7, 5, 11
    labels = np.array([0] * n_normal + [1] * n_tumor)
    tag = lambda n: np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1)     # noqa: E731
    to_tumor = Translation(source=tag(n_normal), image=tag(n_normal), attention=np.ones((n_normal, 1, 1, 1)))
    to_normal = Translation(source=tag(n_tumor), image=tag(n_tumor), attention=np.ones((n_tumor, 1, 1, 1)))
    _, _, selected = arms.synthetic_slices(to_tumor, to_normal, labels, ratio, seed)
    refs = lambda n: [SimpleNamespace(position=i, case_id="c", slice_index=i) for i in range(n)]   # noqa: E731
    planned_tumor = [item.ref.position for item in plan_direction("normal_to_tumor", refs(n_normal), n_tumor, ratio, seed)]
    planned_normal = [item.ref.position for item in plan_direction("tumor_to_normal", refs(n_tumor), n_normal, ratio,
                                                                   seed)]
    assert selected["tumor"].tolist() == planned_tumor
    assert selected["normal"].tolist() == planned_normal
