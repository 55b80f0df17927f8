"""Video embeddings of a model over an annotation list, cached as .npy next to the figure."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def cache_key(checkpoint: str, data: str, frames: int | None, root: str, entries: list,
              clip: str | None = None) -> str:
    """Everything the embeddings depend on (vifi/results.py inputs_record: the checkpoint's sha256, the list, the
    root, the videos' size and mtime, frames, --clip), so another --root or a changed video is computed anew."""
    import json

    from vifi.results import inputs_record, model_record

    record = inputs_record(model_record(checkpoint), data=data, labels=None, root=root, entries=entries,
                           frames=frames, clip=clip, views="1x1 centre")
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


@torch.no_grad()
def embed_videos(checkpoint: str, data: str, root: str, *, frames: int | None, cache_dir: Path, device=None,
                 batch: int = 8, num_workers: int = 0, clip: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(L2-normalised video embeddings [N, D], labels [N]); read back from `cache_dir` when already computed."""
    from torch.utils.data import DataLoader

    from vifi.data.annotations import read_annotation_list
    from vifi.data.augment import normalise
    from vifi.data.dataset import ClipSpec, EvalClips, collate
    from vifi.engine.runtime import setup_runtime
    from vifi.model.checkpoint import build_from_checkpoint
    from vifi.model.facts import inference_inputs

    entries = read_annotation_list(data)
    labels = np.array([e.label for e in entries])
    path = Path(cache_dir) / f"embeddings-{cache_key(checkpoint, data, frames, root, entries, clip)}.npy"
    if path.is_file():  # before building the model: a cached figure costs nothing
        return np.load(path), labels
    model, facts = build_from_checkpoint(checkpoint, clip=clip)
    inputs = inference_inputs(facts, frames=frames)
    runtime = setup_runtime(device, "auto")
    model.to(runtime.device).eval()
    loader = DataLoader(EvalClips(entries, root, ClipSpec(inputs.frames, inputs.input_size)), batch_size=batch,
                        num_workers=num_workers, collate_fn=collate)
    out = []
    for item in loader:
        if any(item["failed"]):
            from vifi.errors import VifiError

            raise VifiError(next(f for f in item["failed"] if f))
        videos = normalise(item["frames"][:, 0].to(runtime.device))
        with runtime.autocast():
            out.append(F.normalize(model.head.encode_video(videos).float(), dim=-1).cpu())
    emb = torch.cat(out).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, emb)
    return emb, labels
