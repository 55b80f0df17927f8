import torch

from vifi.data.annotations import read_annotation_list
from vifi.data.dataset import ClipSpec, EvalClips
from vifi.engine.evaluate import class_text_features, evaluate, shard_indices
from vifi.engine.runtime import Runtime

CPU = Runtime(device=torch.device("cpu"), precision="fp32")


def test_shards_partition_every_index_once():
    for n in (0, 1, 7, 10, 1530):
        for world in (1, 2, 3, 8):
            got = sorted(i for r in range(world) for i in shard_indices(n, r, world))
            assert got == list(range(n))


def test_eval_counts_every_video_once_and_cached_text_equals_per_batch(tiny_model, demo_data):
    from vifi.data.annotations import read_label_csv
    from vifi.data.augment import normalise

    names = read_label_csv(demo_data["labels"])
    entries = read_annotation_list(demo_data["val_list"], len(names))
    ds = EvalClips(entries, demo_data["root"], ClipSpec(frames=4, size=64))
    template = "a photo of a {}."
    result = evaluate(tiny_model, ds, names, CPU, batch=5, num_workers=0, template=template, show_progress=False)
    assert result.n_videos == len(entries) == len(result.predictions)
    assert result.predictions["video"].tolist() == [e.path for e in entries]
    # naive: the text tower re-run inside every batch, softmax per video
    tokens = tiny_model.tokenize([template.format(n) for n in names])
    naive_preds = []
    with torch.no_grad():
        for i in range(len(ds)):
            video = normalise(ds[i]["frames"])  # [V, T, 3, H, W]
            probs = torch.softmax(tiny_model(video, tokens), -1).sum(0)
            naive_preds.append(int(probs.argmax()))
    assert result.predictions["pred"].tolist() == naive_preds
    labels = [e.label for e in entries]
    assert abs(result.top1 - 100 * sum(p == l for p, l in zip(naive_preds, labels)) / len(labels)) < 1e-4
    text = class_text_features(tiny_model, names, template, CPU)
    torch.testing.assert_close(text, tiny_model.encode_text(tokens).detach(), rtol=1e-5, atol=1e-5)
