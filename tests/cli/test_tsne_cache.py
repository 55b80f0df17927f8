"""`vifi viz tsne` caches embeddings; the cache is keyed by everything they depend on, so another --root or a video
changed since is embedded anew, never read back from an earlier run (docs/reliability.md, "Results read back")."""

import shutil
from pathlib import Path

import numpy as np


def test_embeddings_are_recomputed_for_another_root_or_a_changed_video(tmp_path, demo_data, tiny_model):
    from vifi.model.checkpoint import save_weights
    from vifi.viz.embed import embed_videos

    ckpt = tmp_path / "m.safetensors"
    save_weights(ckpt, tiny_model, {"frames": 4, "input_size": 64})
    lines = Path(demo_data["val_list"]).read_text().splitlines()[:4]
    data = tmp_path / "list.txt"
    data.write_text("\n".join(lines) + "\n")
    paths = [l.rsplit(" ", 1)[0] for l in lines]
    other = tmp_path / "other-root"
    shutil.copytree(demo_data["root"], other)
    shutil.copy(Path(demo_data["root"]) / paths[1], other / paths[0])  # another video under the first one's name
    cache = tmp_path / "cache"

    def embed(root, cache_dir=cache):
        return embed_videos(str(ckpt), str(data), str(root), frames=None, cache_dir=cache_dir, device="cpu")[0]

    first = embed(demo_data["root"])
    assert len(list(cache.iterdir())) == 1
    moved = embed(other)  # same list, same checkpoint, another --root
    np.testing.assert_array_equal(moved, embed(other, tmp_path / "fresh-1"))  # what no cache computes
    assert not np.array_equal(moved[0], first[0]) and np.array_equal(moved[2], first[2])
    # The same video file rewritten in place with other content (size and mtime change): embedded anew.
    shutil.copy(Path(demo_data["root"]) / paths[2], other / paths[0])
    changed = embed(other)
    np.testing.assert_array_equal(changed, embed(other, tmp_path / "fresh-2"))
    assert not np.array_equal(changed[0], moved[0])
    np.testing.assert_array_equal(embed(demo_data["root"]), first)  # the first inputs still read back
    assert len(list(cache.iterdir())) == 3
