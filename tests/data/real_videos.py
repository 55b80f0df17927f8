"""Real-world video files made with PyAV for the data tests: phone rotation, audio-only files, marked frames."""

import numpy as np


def write_rotated(path, frames, degrees):
    """An H.264 mp4 whose display matrix says "rotate by `degrees`" (what phones write), made with PyAV."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.set_display_rotation(degrees)
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def marked_frames(n=6, h=48, w=64):
    """Frames with a bright top band (red) and left band (green): any rotation or flip is visible."""
    frames = np.full((n, h, w, 3), 60, dtype=np.uint8)
    frames[:, : h // 4, :, 0] = 250
    frames[:, :, : w // 4, 1] = 250
    frames += (np.arange(n, dtype=np.uint8) * 5)[:, None, None, None]
    return frames


def write_audio_only(path):
    """An AAC-only mp4/m4a: a file with a video suffix and no video stream."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        for _ in range(5):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
