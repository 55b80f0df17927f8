"""Windows on a video's real timestamps (no model): start offsets, variable frame rate, short videos, bad flags,
and the shortest unique suffix the zeroshot tables show."""

from fractions import Fraction

import numpy as np
import pytest

from vifi.errors import VifiError
from vifi.search.windows import check_window, cut, frame_times
from vifi.zeroshot import unique_suffixes


def _write_with_pts(path, pts_ms):
    """A video whose frame k is shown at pts_ms[k] milliseconds (the stream's own clock, not 0-based)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.time_base = Fraction(1, 1000)
        for k, pts in enumerate(pts_ms):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), k * 7 % 255, np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_frame_times_follow_the_stream_clock_from_its_first_frame(tmp_path):
    # starts at 5 s (a start offset), 10 frames at 10 fps, then a 2 s gap, then 10 frames at 5 fps: VFR
    pts = [5000 + 100 * k for k in range(10)] + [7900 + 200 * k for k in range(10)]
    times = frame_times(_write_with_pts(tmp_path / "vfr.mp4", pts))
    np.testing.assert_allclose(times, (np.array(pts) - 5000) / 1000, atol=1e-3)


def test_windows_hold_the_frames_shown_in_them_and_cover_the_end():
    times = np.concatenate([np.arange(0, 1, 0.1), 2.9 + 0.2 * np.arange(10)])  # 10 fps, gap, 5 fps; ends 4.8+0.1
    windows = cut(times, 2.0, 1.0)
    assert [(w.start, w.end) for w in windows] == [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0), (2.9, 4.9)]
    assert windows[0].frames.tolist() == list(range(10))  # the 10 fps second
    assert windows[1].frames.tolist() == [10]  # 1–3 s: only the frame at 2.9 s
    assert times[windows[2].frames].tolist() == pytest.approx([2.9, 3.1, 3.3, 3.5, 3.7, 3.9])
    assert windows[3].frames.tolist() == list(range(10, 20))  # the tail window ends at the video's end
    assert [(w.start, w.end) for w in cut(np.arange(0, 3, 0.5), 2.0, 2.0)] == [(0.0, 2.0), (1.0, 3.0)]
    short = cut(np.arange(8) / 8, 10.0, 5.0)  # a 1 s video, 10 s windows: one window, the whole video
    assert [(w.start, w.end) for w in short] == [(0.0, 1.0)] and short[0].frames.tolist() == list(range(8))


@pytest.mark.parametrize("window, stride, needle", [(0, None, "--window 0"), (-2, None, "--window -2"),
                                                    (2, 3, "longer than --window"), (None, 1, "needs --window"),
                                                    (2, 0, "--stride 0")])
def test_bad_window_flags_are_refused(window, stride, needle):
    with pytest.raises(VifiError, match=needle):
        check_window(window, stride)


def test_window_flags_default_the_stride_to_the_window():
    assert check_window(4, None) == (4.0, 4.0) and check_window(None, None) == (None, None)


def test_the_shortest_unique_suffix_tells_same_named_videos_apart():
    paths = [f"/d/videos/{c}/test_000.mp4" for c in ("blue", "red")] + ["/d/videos/red/test_001.mp4",
                                                                       "/e/x/blue/test_000.mp4"]
    assert unique_suffixes(paths) == {paths[0]: "videos/blue/test_000.mp4", paths[1]: "red/test_000.mp4",
                                      paths[2]: "test_001.mp4", paths[3]: "x/blue/test_000.mp4"}


def test_the_zeroshot_table_names_same_named_videos_by_their_folders(capsys):
    import pandas as pd

    from vifi.zeroshot import print_top_k

    table = pd.DataFrame({"video": ["/d/blue/test_000.mp4", "/d/red/test_000.mp4"], "label": ["a", "b"],
                          "prob": [0.6, 0.7]})
    print_top_k(table, 1)
    shown = capsys.readouterr().out
    assert "blue/test_000.mp4" in shown and "red/test_000.mp4" in shown
