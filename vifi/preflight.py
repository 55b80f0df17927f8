"""Checks made before training starts, so that a bad input fails in seconds, not after an epoch."""

from __future__ import annotations

from pathlib import Path

from vifi.errors import VifiError


def _first_frame_error(job: tuple[str, str]) -> str | None:
    """None if the video's first frame decodes with the backend training will use, else the reason."""
    from vifi.data.decoding import read_frames

    path, backend = job
    try:
        read_frames(path, lambda n: [0], backend)
    except Exception as exc:  # noqa: BLE001 - whatever the decoder raises, the video is not usable
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def check_decodable(entries, root: str, backend: str, list_name: str | None, *, skip: bool,
                    workers: int | str) -> None:
    """Decode one frame of every video of the evaluation list (cheap: headers and one frame, in parallel).

    An undecodable video would otherwise stop the run at the first evaluation, after a whole epoch. With `skip`
    (eval.skip_undecodable / --skip-undecodable) the run goes on and the evaluation leaves those videos out.
    """
    from vifi.engine.loaders import resolve_workers
    from vifi.progress import map_with_progress

    jobs = [(str(Path(root) / e.path), backend) for e in entries]
    if len(jobs) > 200:  # worth processes and a progress bar
        errors = map_with_progress(_first_frame_error, jobs, workers=max(1, resolve_workers(workers)),
                                   description="checking val videos")
    else:
        errors = [_first_frame_error(job) for job in jobs]
    bad = [(e.path, why) for e, why in zip(entries, errors) if why]
    if not bad:
        return
    if skip:
        from vifi import console

        console.note(f"notice: {len(bad)} of {len(entries)} videos in {list_name} cannot be decoded (first: "
                     f"{bad[0][0]}); the evaluations leave them out (--skip-undecodable)")
        return
    raise VifiError(f"{len(bad)} of {len(entries)} videos in {list_name} cannot be decoded (first: {bad[0][0]}: "
                    f"{bad[0][1]}); fix or remove them, or pass --skip-undecodable to evaluate on the others")
