"""Samplers for the paper's regimes: batch composition, determinism by seed, and exact resume from a state."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minigrad import data
from minigrad.data.samplers import distinct_positions

pytestmark = pytest.mark.backends("numpy")  # host-side index code only


def take(sampler: data.Sampler, n: int) -> list[np.ndarray]:
    return list(itertools.islice(sampler.batches(), n))


@st.composite
def labelled(draw, k_max: int = 4):
    """(labels, k, groups per batch): every label has at least k examples."""
    k = draw(st.integers(1, k_max))
    num_labels = draw(st.integers(1, 6))
    counts = draw(st.lists(st.integers(k, k + 6), min_size=num_labels, max_size=num_labels))
    classes = draw(st.permutations(list(range(10))))[:num_labels]  # labels need not be 0..L-1
    labels = np.repeat(classes, counts)
    labels = labels[np.random.default_rng(draw(st.integers(0, 99))).permutation(labels.size)]
    groups = draw(st.integers(1, 5))
    return labels, k, groups


# -- i.i.d. -------------------------------------------------------------------


@given(n=st.integers(1, 60), batch=st.integers(1, 16), seed=st.integers(0, 2**32 - 1), drop=st.booleans())
def test_iid_epochs_are_permutations(n, batch, seed, drop):
    if drop and batch > n:
        with pytest.raises(ValueError, match="no batch"):
            data.IIDSampler(n, batch, seed=seed)
        return
    sampler = data.IIDSampler(np.zeros(n, dtype=np.int64), batch, seed=seed, drop_last=drop)
    for _ in range(2):
        batches = list(sampler)
        assert len(batches) == len(sampler) == (n // batch if drop else -(-n // batch))
        assert all(b.dtype == np.int64 for b in batches)
        assert all(len(b) == batch for b in batches[: n // batch])
        flat = np.concatenate(batches)
        assert len(np.unique(flat)) == len(flat) and flat.min() >= 0 and flat.max() < n
        if not drop:
            np.testing.assert_array_equal(np.sort(flat), np.arange(n))


def test_iid_reshuffles_each_epoch_and_is_seeded():
    a, b, c = (data.IIDSampler(100, 10, seed=s) for s in (7, 7, 8))
    first, second = np.concatenate(list(a)), np.concatenate(list(a))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(np.concatenate(take(b, 20)), np.concatenate([first, second]))
    assert not np.array_equal(np.concatenate(list(c)), first)
    assert a.epoch == 1


def test_sequential_covers_everything_in_order():
    sampler = data.SequentialSampler(np.zeros(23, dtype=np.int64), 5)
    batches = list(sampler)
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(np.concatenate(batches), np.arange(23))
    assert [len(b) for b in data.SequentialSampler(23, 5, drop_last=True)] == [5] * 4


# -- non-i.i.d. ---------------------------------------------------------------


@given(case=labelled(), seed=st.integers(0, 2**32 - 1), num_batches=st.integers(1, 6))
def test_noniid_batches_are_groups_of_k_same_label_examples(case, seed, num_batches):
    labels, k, groups = case
    batch = k * groups
    sampler = data.NonIIDSampler(labels, batch, examples_per_label=k, seed=seed, num_batches=num_batches)
    assert sampler.labels_per_batch == groups and len(sampler) == num_batches
    for indices in take(sampler, 2 * num_batches + 1):
        assert indices.shape == (batch,) and indices.dtype == np.int64
        rows = indices.reshape(groups, k)  # the k examples of a label are consecutive
        row_labels = labels[rows]
        assert (row_labels == row_labels[:, :1]).all()
        assert all(len(set(row)) == k for row in rows.tolist())  # distinct examples within a group


@given(case=labelled(k_max=3), seed=st.integers(0, 2**32 - 1))
def test_halfsplit_pairs_are_split_across_the_parts(case, seed):
    labels, k, groups = case
    batch = k * groups
    sampler = data.HalfSplitSampler(labels, batch, examples_per_label=k, seed=seed, num_batches=3)
    assert sampler.virtual_batch_size == groups
    for indices in take(sampler, 4):
        parts = indices.reshape(k, groups)  # part j holds the j-th example of every group
        part_labels = labels[parts]
        assert (part_labels == part_labels[:1]).all()  # same label at the same position in every part
        assert all(len(set(column)) == k for column in parts.T.tolist())


def test_halfsplit_is_the_noniid_batch_rearranged():
    labels = np.repeat(np.arange(10), 7)
    noniid = data.NonIIDSampler(labels, 32, examples_per_label=2, seed=3)
    half = data.HalfSplitSampler(labels, 32, seed=3)
    for a, b in zip(take(noniid, 5), take(half, 5)):
        np.testing.assert_array_equal(b, a.reshape(16, 2).T.reshape(-1))
        np.testing.assert_array_equal(labels[b[:16]], labels[b[16:]])


def test_noniid_paper_setting_and_extremes():
    labels = np.repeat(np.arange(100), 5)  # unbalanced counts would not change the label draw
    paper = data.NonIIDSampler(labels, 32, examples_per_label=2, seed=0)
    assert (paper.labels_per_batch, len(paper)) == (16, 500 // 32)
    same = data.NonIIDSampler(labels, 32, labels_per_batch=16, seed=0)
    for a, b in zip(take(paper, 3), take(same, 3)):
        np.testing.assert_array_equal(a, b)
    single = data.NonIIDSampler(np.repeat(np.arange(3), 40), 32, examples_per_label=32, seed=1)
    for indices in take(single, 5):
        assert len(set(indices.tolist())) == 32 and len(set((indices // 40).tolist())) == 1


def test_noniid_draws_labels_uniformly_with_replacement():
    labels = np.concatenate([np.zeros(500, np.int64), np.ones(10, np.int64), np.full(10, 2)])  # unbalanced
    sampler = data.NonIIDSampler(labels, 8, examples_per_label=2, seed=0, num_batches=3000)
    first_of_groups = np.stack(list(sampler))[:, ::2]
    freq = np.bincount(labels[first_of_groups].ravel(), minlength=3) / first_of_groups.size
    np.testing.assert_allclose(freq, [1 / 3] * 3, atol=0.02)
    repeats = np.mean([len(set(row)) < 4 for row in labels[first_of_groups].tolist()])
    assert repeats > 0.5  # with replacement: 4 draws from 3 labels always repeat one


@given(counts=st.lists(st.integers(3, 9), min_size=1, max_size=20), k=st.integers(1, 3), seed=st.integers(0, 999))
def test_distinct_positions(counts, k, seed):
    counts = np.asarray(counts)
    positions = distinct_positions(np.random.default_rng(seed), counts, k)
    assert positions.shape == (len(counts), k)
    assert (positions >= 0).all() and (positions < counts[:, None]).all()
    assert all(len(set(row)) == k for row in positions.tolist())


def test_distinct_positions_are_uniform_ordered_subsets():
    positions = distinct_positions(np.random.default_rng(0), np.full(60_000, 3), 2)
    pairs = positions[:, 0] * 3 + positions[:, 1]
    freq = np.bincount(pairs, minlength=9) / len(pairs)
    np.testing.assert_allclose(freq[[1, 2, 3, 5, 6, 7]], 1 / 6, atol=0.01)
    assert freq[[0, 4, 8]].sum() == 0


# -- determinism and resume ---------------------------------------------------


def samplers(seed: int) -> dict[str, data.Sampler]:
    labels = np.repeat(np.arange(6), [9, 7, 5, 8, 6, 10])
    return {
        "iid": data.IIDSampler(labels, 8, seed=seed),
        "noniid": data.NonIIDSampler(labels, 8, examples_per_label=2, seed=seed),
        "single": data.NonIIDSampler(labels, 4, examples_per_label=4, seed=seed, num_batches=3),
        "halfsplit": data.HalfSplitSampler(labels, 8, seed=seed),
        "sequential": data.SequentialSampler(labels, 8),
    }


@pytest.mark.parametrize("kind", ["iid", "noniid", "single", "halfsplit"])
def test_same_seed_same_batches(kind):
    a, b, c = samplers(5)[kind], samplers(5)[kind], samplers(6)[kind]
    batches = take(a, 12)
    for x, y in zip(batches, take(b, 12)):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(batches, take(c, 12)))


@given(kind=st.sampled_from(["iid", "noniid", "single", "halfsplit", "sequential"]), before=st.integers(0, 17))
def test_state_dict_resume_continues_exactly(kind, before):
    original = samplers(11)[kind]
    stream = original.batches()
    for _ in range(before):
        next(stream)
    state = json.loads(json.dumps(original.state_dict()))  # plain JSON data
    expected = [next(stream) for _ in range(10)]
    resumed = samplers(99)[kind]  # another seed: everything must come from the state
    resumed.load_state_dict(state)
    for x, y in zip(expected, take(resumed, 10)):
        np.testing.assert_array_equal(x, y)


def test_state_dict_resume_with_plain_iteration():
    a = data.IIDSampler(20, 6, seed=1)
    it = iter(a)
    next(it)
    state = a.state_dict()
    rest = list(it) + list(a)
    b = data.IIDSampler(20, 6, seed=2)
    b.load_state_dict(state)
    resumed = list(b) + list(b)
    assert len(rest) == len(resumed) == 5 and b.epoch == a.epoch == 1
    for x, y in zip(rest, resumed):
        np.testing.assert_array_equal(x, y)


def test_state_dict_of_another_sampler_is_refused():
    labels = np.repeat(np.arange(4), 8)
    state = data.NonIIDSampler(labels, 8, examples_per_label=2).state_dict()
    with pytest.raises(ValueError, match="kind='NonIIDSampler'"):
        data.IIDSampler(labels, 8).load_state_dict(state)
    with pytest.raises(ValueError, match="config"):
        data.NonIIDSampler(labels, 8, examples_per_label=4).load_state_dict(state)
    with pytest.raises(ValueError, match="num_examples"):
        data.NonIIDSampler(labels[:-1], 8, examples_per_label=2).load_state_dict(state)


# -- evaluation helpers and errors --------------------------------------------


def test_with_labels_builds_test_batches_like_training_batches():
    train_labels, test_labels = np.repeat(np.arange(10), 20), np.repeat(np.arange(10), 10)
    train = data.NonIIDSampler(train_labels, 32, examples_per_label=2, seed=0, num_batches=500)
    test = train.with_labels(test_labels, batch_size=50, seed=1)  # the paper: 25 labels x 2
    assert isinstance(test, data.NonIIDSampler) and test.num_examples == 100
    assert (test.batch_size, test.labels_per_batch, len(test)) == (50, 25, 2)
    for indices in test:
        rows = test_labels[indices.reshape(25, 2)]
        assert (rows[:, 0] == rows[:, 1]).all()


def test_make_sampler():
    labels = np.repeat(np.arange(4), 8)
    assert isinstance(data.make_sampler("iid", labels, 8), data.IIDSampler)
    assert isinstance(data.make_sampler("non-iid", labels, 8, examples_per_label=4), data.NonIIDSampler)
    assert isinstance(data.make_sampler("half_split", labels, 8), data.HalfSplitSampler)
    assert isinstance(data.make_sampler("sequential", labels, 8), data.SequentialSampler)
    with pytest.raises(ValueError, match=r"sampler: expected one of .*got 'random'"):
        data.make_sampler("random", labels, 8)


def test_bad_arguments():
    labels = np.repeat(np.arange(4), 8)
    with pytest.raises(ValueError, match="batch_size=30 is not divisible by examples_per_label=4"):
        data.NonIIDSampler(labels, 30, examples_per_label=4)
    with pytest.raises(ValueError, match="batch_size=30 is not divisible by labels_per_batch=4"):
        data.NonIIDSampler(labels, 30, labels_per_batch=4)
    with pytest.raises(ValueError, match="disagree"):
        data.NonIIDSampler(labels, 32, examples_per_label=2, labels_per_batch=8)
    with pytest.raises(ValueError, match=r"labels \[3\] have fewer than 2 examples"):
        data.NonIIDSampler(np.array([0, 0, 1, 1, 2, 2, 3]), 4)
    with pytest.raises(ValueError, match="batch_size: expected a positive integer, got 0"):
        data.IIDSampler(labels, 0)
    with pytest.raises(ValueError, match="examples_per_label: expected a positive integer"):
        data.NonIIDSampler(labels, 8, examples_per_label=-2)
    with pytest.raises(ValueError, match="1-D array of integer labels"):
        data.NonIIDSampler(np.zeros((4, 2)), 8)
    with pytest.raises(ValueError, match="at least one example"):
        data.NonIIDSampler(np.zeros(0, np.int64), 8)
