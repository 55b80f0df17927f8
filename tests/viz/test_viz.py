"""`vifi viz`: each picture from the demo data and a tiny model, with a numeric property behind it."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from vifi.model.backbone import TINY_CLIP, build_clip
from vifi.model.checkpoint import save_weights
from vifi.model.vifi_clip import ViFiCLIP


def _vifi(*args):
    proc = subprocess.run([sys.executable, "-m", "vifi", *map(str, args)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _png_size(path):
    from PIL import Image

    with Image.open(path) as im:
        return im.size


@pytest.fixture(scope="module")
def trained(demo_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("viz") / "trained"
    _vifi("finetune", "demo", "--data", demo_data["train_list"], "--val", demo_data["val_list"], "--labels",
          demo_data["labels"], "--root", demo_data["root"], "--out", out, "--set", "train.epochs=6",
          "--set", "train.global_batch=6", "--set", "train.micro_batch=6", "--set", "data.num_workers=0")
    return out


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
    png = tmp_path / f"attention_{video.stem}.png"
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
