import numpy as np

from vifi.data.sampling import sample_test_indices, sample_train_indices, sample_view_indices


def test_train_sampling_segments():
    rng = np.random.default_rng(0)
    idx = sample_train_indices(100, 8, rng)  # a = 12
    assert len(idx) == 8
    for i, v in enumerate(idx):
        assert 12 * i <= v < 12 * i + 12
    # the tail (N mod T = 4 frames) is never sampled
    draws = np.concatenate([sample_train_indices(100, 8, rng) for _ in range(500)])
    assert draws.max() == 95


def test_train_sampling_short_video_rounds_half_to_even():
    # N=5, T=8: round(i*5/8) = round(0, .625, 1.25, 1.875, 2.5, 3.125, 3.75, 4.375) with 2.5 -> 2
    assert sample_train_indices(5, 8, np.random.default_rng(0)).tolist() == [0, 1, 1, 2, 2, 3, 4, 4]


def test_train_sampling_between_t_and_2t_uses_first_t_frames():
    assert sample_train_indices(40, 32, np.random.default_rng(3)).tolist() == list(range(32))


def test_test_sampling_segment_centres():
    # N=10, T=4: a=2.5 -> floor(1.25, 3.75, 6.25, 8.75)
    assert sample_test_indices(10, 4).tolist() == [1, 3, 6, 8]
    # N < T wraps modulo N
    assert sample_test_indices(3, 4).tolist() == [0, 1, 1, 2]


def test_multi_clip_views_are_deterministic_and_distinct():
    v = sample_view_indices(100, 4, 4, False, None)
    assert v.shape == (4, 4)
    assert v[:, 0].tolist() == [3, 9, 15, 21]  # a=25, positions (c+.5)/4*25
    ref = sample_view_indices(100, 4, 3, True, np.random.default_rng(0))
    assert ref.shape == (3, 4) and all(25 * i <= x < 25 * i + 25 for row in ref for i, x in enumerate(row))
