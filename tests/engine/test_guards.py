"""Guards: non-finite steps are skipped then stop the run; a full disk leaves the previous checkpoint intact."""

import errno
import json

import pytest
import torch

from vifi.config import load_config
from vifi.errors import VifiError


def _trainer(demo_data, tmp_path, tiny_model, epochs=2, sets=()):
    from vifi.data.annotations import read_annotation_list, read_label_csv
    from vifi.data.dataset import ClipSpec, TrainClips
    from vifi.engine.runtime import setup_runtime
    from vifi.engine.train import Trainer
    from vifi.model.vifi_clip import class_prompts

    cfg = load_config("demo", [f"train.epochs={epochs}", "train.global_batch=6", "train.micro_batch=3",
                               "data.num_workers=0", "data.frames=2", *sets])
    names = read_label_csv(demo_data["labels"])
    entries = read_annotation_list(demo_data["train_list"], len(names))
    data = TrainClips(entries, demo_data["root"], ClipSpec(2, 64), 0, 0.0, 0.0)
    tokens = tiny_model.tokenize(class_prompts(names, "a photo of a {}."))
    return Trainer(cfg, tiny_model, setup_runtime("cpu", "fp32"), tmp_path, data, tokens, len(names),
                   show_progress=False)


def test_non_finite_steps_are_skipped_then_the_run_stops_naming_the_last_good_checkpoint(
        demo_data, tmp_path, tiny_model, monkeypatch, capsys):
    import vifi.engine.step as step_module

    trainer = _trainer(demo_data, tmp_path, tiny_model, epochs=3)
    assert trainer.steps_per_epoch == 4
    real = step_module.accumulate_step_gradients
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        total = real(*args, **kwargs)
        if calls["n"] <= 4:
            return total  # epoch 1 trains normally and is checkpointed
        for p in tiny_model.parameters():
            if p.grad is not None:
                p.grad.fill_(float("nan"))
        return total

    monkeypatch.setattr(step_module, "accumulate_step_gradients", poisoned)
    with pytest.raises(VifiError, match=r"5 steps with a non-finite .*checkpoint: .*ckpt-0000008\.safetensors"):
        trainer.fit()
    from safetensors.torch import load_file

    epoch_1 = load_file(str(tmp_path / "checkpoints" / "ckpt-0000004.safetensors"))
    epoch_2 = load_file(str(tmp_path / "checkpoints" / "ckpt-0000008.safetensors"))  # every step of it skipped
    for k, v in tiny_model.clip.state_dict().items():
        assert torch.equal(epoch_1[k], v) and torch.equal(epoch_2[k], v), f"{k} changed by a skipped step"
    err = capsys.readouterr().err  # warnings go to stderr
    assert err.count("step skipped") == 5


def test_disk_full_while_saving_keeps_the_previous_checkpoint(demo_data, tmp_path, tiny_model, monkeypatch):
    import vifi.engine.checkpointing as ck

    trainer = _trainer(demo_data, tmp_path, tiny_model)
    trainer._save()  # step 0
    trainer.close()  # written in the background: on disk once close() returns
    folder = tmp_path / "checkpoints"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    trainer.progress["step"] = 3

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck.torch, "save", full_disk)
    trainer._save()  # the host copy is taken; the write fails in the background thread ...
    with pytest.raises(VifiError, match=r"No space left on device.*previous checkpoint \(ckpt-0000000"):
        trainer.close()  # ... and is raised at the next wait (here, or the next save, or the run's end)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing half-written left behind
    assert json.loads((folder / "latest.json").read_text())["weights"] == "ckpt-0000000.safetensors"


def test_background_checkpoint_holds_the_weights_of_when_it_was_asked_for(demo_data, tmp_path, tiny_model,
                                                                         monkeypatch):
    """The write runs in a thread while training changes the weights in place: the file must hold the host copy
    taken at save time (on CPU `.cpu()` would alias the live tensors), and the loop must not wait for the write."""
    import threading

    import vifi.engine.checkpointing as ck
    from safetensors.torch import load_file

    trainer = _trainer(demo_data, tmp_path, tiny_model)
    release, real = threading.Event(), ck.write_weights

    def slow_write(*args, **kwargs):
        assert release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(ck, "write_weights", slow_write)
    asked = {k: v.clone() for k, v in tiny_model.clip.state_dict().items()}
    trainer._save()  # returns although the write is held back
    assert not (tmp_path / "checkpoints" / "latest.json").exists()
    with torch.no_grad():
        for p in tiny_model.parameters():
            p.add_(1.0)  # the next steps
    release.set()
    trainer.close()
    saved = load_file(str(tmp_path / "checkpoints" / "ckpt-0000000.safetensors"))
    for k, v in asked.items():
        assert torch.equal(saved[k], v), k
    assert json.loads((tmp_path / "checkpoints" / "latest.json").read_text())["weights"] == "ckpt-0000000.safetensors"
