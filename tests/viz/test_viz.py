"""`vifi viz`: each picture from the demo data and a tiny model, with a numeric property behind it."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import vifi_in_process
from vifi.model.backbone import TINY_CLIP, build_clip
from vifi.model.checkpoint import save_weights
from vifi.model.vifi_clip import ViFiCLIP


def _vifi(*args):
    """In this process (tests/conftest.py `vifi_in_process`): a new process per call costs seconds of imports."""
    proc = vifi_in_process(*args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _png_size(path):
    from PIL import Image

    with Image.open(path) as im:
        return im.size


@pytest.fixture(scope="module")
def trained(trained_demo, tmp_path_factory):
    """A copy of the session's 80-step fine-tune (tests/conftest.py), named `trained`: pictures and scores are named
    after the run folder."""
    import shutil

    return Path(shutil.copytree(trained_demo, tmp_path_factory.mktemp("viz") / "trained",
                                ignore=shutil.ignore_patterns(".vifi.lock")))


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    path = tmp_path_factory.mktemp("viz") / "untrained.safetensors"
    torch.manual_seed(0)
    save_weights(path, ViFiCLIP(build_clip(TINY_CLIP), TINY_CLIP), {"frames": 8, "input_size": 64})
    return path


def test_tsne_png_and_trained_embeddings_separate_classes_better(demo_data, trained, untrained, tmp_path):
    stdout = _vifi("viz", "tsne", "--data", demo_data["train_list"], "--labels", demo_data["labels"], "--root",
                   demo_data["root"], "--checkpoint", untrained, "--checkpoint", trained, "--out", tmp_path)
    result = json.loads(stdout.strip().splitlines()[-1])
    png = tmp_path / "tsne_untrained_vs_trained.png"
    assert result["png"] == str(png) and png.stat().st_size > 10_000
    w, h = _png_size(png)
    assert w > 1.6 * h  # two panels side by side
    scores = result["scores"]
    assert scores["trained"]["silhouette"] > scores["untrained"]["silhouette"]
    assert len(list((tmp_path / "embeddings").glob("*.npy"))) == 2  # cached for the next call
    assert json.loads((tmp_path / "tsne_untrained_vs_trained_scores.json").read_text()) == scores


def test_separability_scores_hand_made():
    from vifi.viz.tsne import separability

    a = np.array([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 4) + np.random.default_rng(0).normal(0, 0.01, (8, 2))
    s = separability(a, np.array([0] * 4 + [1] * 4), k=3)
    assert s["knn_acc"] == 100.0 and s["silhouette"] > 0.9
    mixed = separability(a, np.array([0, 1] * 4), k=3)
    assert mixed["silhouette"] < 0.1 and mixed["knn_acc"] < 50


def test_attention_grid_and_weights(demo_data, trained, untrained, tmp_path):
    from vifi.data.annotations import read_annotation_list
    from vifi.model.checkpoint import build_from_checkpoint
    from vifi.viz.attention import cls_attention

    video = demo_data["root"] / read_annotation_list(demo_data["val_list"])[0].path
    _vifi("viz", "attention", video, "--checkpoint", untrained, "--checkpoint", trained, "--frames", "4",
          "--out", tmp_path)
    png = tmp_path / f"attention_{video.parent.name}_{video.stem}.png"
    w, h = _png_size(png)
    assert w > 1.3 * h  # 4 frame columns, 2 model rows
    model, _ = build_from_checkpoint(trained)
    att = cls_attention(model, torch.randn(1, 3, 3, 64, 64))
    assert att.shape == (1, 3, 4, 4)
    assert (att >= 0).all() and (att.sum(dim=(-1, -2)) < 1 + 1e-5).all()  # a softmax row minus the class token


def test_curves_png_from_run_folders(trained, tmp_path):
    _vifi("viz", "curves", trained, "--out", tmp_path)
    png = tmp_path / "curves_trained.png"
    w, h = _png_size(png)
    assert w > 2.5 * h  # loss, accuracy, learning rate side by side


def _error_line(*args):
    proc = vifi_in_process(*args)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_relevance_is_higher_on_the_moving_shape_than_on_the_background(demo_data, trained):
    """All 12 held-out demo videos, 8 frames each, the class each is explained for = the model's prediction.
    Measured on the session's 80-step `trained` model (CPU, 2026-12-06): relevance mean ratio 6.01, 10/12 videos
    above 1; last 4.35 (10/12); rollout 2.70 (10/12). A 24-step model gave relevance 2.18 (9/12), and with
    train.seed 1, 2, 3 1.03 (5/12), 1.74 (9/12), 4.83 (7/12): a 24-video model is a weak one, so the bounds below
    are loose (docs/design.md)."""
    from tests.conftest import DEMO_SIZES
    from vifi.data.demo import demo_videos
    from vifi.viz.mask_ratios import demo_mask_ratios, mask_in_crop

    for split, _, _, _, masks in demo_videos(**DEMO_SIZES):
        if split == "test":
            inside = mask_in_crop(masks, 64, 8)
            assert 0.05 < inside.float().mean() < 0.5  # the shape is in the crop, and so is background
    ratios = demo_mask_ratios(trained, demo_data["root"], **DEMO_SIZES)
    print({m: (round(float(np.mean(r)), 3), sum(x > 1 for x in r)) for m, r in ratios.items()})
    relevance = np.array(ratios["relevance"])
    assert len(relevance) == 12
    assert relevance.mean() > 1.3 and (relevance > 1).sum() >= 7


@pytest.mark.slow
def test_attention_cli_methods_write_their_maps(demo_data, trained, untrained, tmp_path):
    from vifi.data.annotations import read_annotation_list
    from vifi.engine.evaluate import class_text_features
    from vifi.engine.runtime import setup_runtime
    from vifi.model.checkpoint import build_from_checkpoint
    from vifi.viz.attention import model_input, video_maps

    video = demo_data["root"] / read_annotation_list(demo_data["val_list"])[0].path
    label = "a green triangle pulsing"
    out = json.loads(_vifi("viz", "attention", video, "--checkpoint", trained, "--frames", "4", "--method",
                           "relevance", "--label", label, "--out", tmp_path).strip().splitlines()[-1])
    assert out["png"] == str(tmp_path / f"attention_{video.parent.name}_{video.stem}_relevance.png") and _png_size(out["png"])[0] > 200
    assert out["explained"] == {"trained": label}
    model, facts = build_from_checkpoint(trained)
    model.eval()
    names = list(facts.class_names)
    text = class_text_features(model, names, facts.template, setup_runtime("cpu", "fp32"))
    expected, _ = video_maps(model, model_input(video, 4, 64), "relevance", text_features=text,
                             target=names.index(label))
    np.testing.assert_allclose(np.load(out["maps"])[0], expected.numpy(), atol=1e-6)

    # rollout: two rows, the untrained model needs no class names for a class-free method
    out = json.loads(_vifi("viz", "attention", video, "--checkpoint", untrained, "--checkpoint", trained,
                           "--frames", "4", "--method", "rollout", "--out", tmp_path).strip().splitlines()[-1])
    maps = np.load(out["maps"])
    assert maps.shape == (2, 4, 4, 4) and out["png"].endswith("_rollout.png")
    assert (maps >= 0).all() and (maps.sum(axis=(-1, -2)) <= 1 + 1e-5).all()

    # the untrained checkpoint records no classes: --classes supplies them
    out = json.loads(_vifi("viz", "attention", video, "--checkpoint", untrained, "--frames", "2", "--method",
                           "relevance", "--classes", "a dog,a cat", "--out", tmp_path).strip().splitlines()[-1])
    assert out["explained"]["untrained"] in ("a dog", "a cat")


def test_attention_cli_refuses_bad_method_and_class_flags(demo_data, trained, untrained, tmp_path):
    from vifi.data.annotations import read_annotation_list

    video = demo_data["root"] / read_annotation_list(demo_data["val_list"])[0].path
    common = (video, "--frames", "2", "--out", tmp_path)
    assert "'rollup' is not one of" in _error_line("viz", "attention", *common, "--checkpoint", trained,
                                                   "--method", "rollup")
    assert "add --method relevance" in _error_line("viz", "attention", *common, "--checkpoint", trained,
                                                   "--label", "a cat")
    assert "records no class names" in _error_line("viz", "attention", *common, "--checkpoint", untrained,
                                                   "--method", "relevance")
    line = _error_line("viz", "attention", *common, "--checkpoint", trained, "--method", "relevance", "--label",
                       "a cat")
    assert "'a cat' is not one of the classes" in line and "a red circle sliding across" in line
    assert "not both" in _error_line("viz", "attention", *common, "--checkpoint", trained, "--method", "relevance",
                                     "--labels", demo_data["labels"], "--classes", "a,b")
    assert "--frames 0" in _error_line("viz", "attention", video, "--frames", "0", "--out", tmp_path, "--checkpoint",
                                       trained)
    assert "more than once" in _error_line("viz", "attention", *common, "--checkpoint", trained, "--method",
                                           "relevance", "--classes", "a,b,a")
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def test_attention_pictures_of_same_named_videos_in_two_folders_do_not_overwrite(demo_data, untrained, tmp_path):
    # The demo has a test_000.mp4 in every class folder; each gets its own picture and maps.
    from vifi.data.annotations import read_annotation_list

    videos = [demo_data["root"] / e.path for e in read_annotation_list(demo_data["val_list"])]
    first = videos[0]
    second = next(v for v in videos if v.name == first.name and v.parent != first.parent)
    maps = []
    for video in (first, second):
        out = json.loads(_vifi("viz", "attention", video, "--checkpoint", untrained, "--frames", "2",
                               "--out", tmp_path).strip().splitlines()[-1])
        assert out["png"] == str(tmp_path / f"attention_{video.parent.name}_{video.stem}.png")
        maps.append(out["maps"])
    assert maps[0] != maps[1] and all(Path(m).is_file() for m in maps)
    assert not np.array_equal(np.load(maps[0]), np.load(maps[1]))  # two videos' maps, neither overwritten
    assert len(list(tmp_path.glob("attention_*.png"))) == 2
