"""The shipped recipes carry the paper's hyper-parameters (SPEC §4), checked against the numbers and the SPEC table."""

import re

import pytest

from tests.conftest import SHARED
from vifi.config import load_config, recipe_names

COMMON = dict(arch="ViT-B-16", input_size=224, betas=(0.9, 0.98), weight_decay=1e-3, warmup_epochs=5,
              min_lr_ratio=0.01, mixup=0.8, cutmix=1.0, mix_switch_prob=0.5, label_smoothing=0.1,
              color_jitter=0.8, grayscale=0.2, seed=1024, micro_batch="auto", mix_group=4,
              lr_clock=(8, 4))

# recipe -> (frames, epochs, global batch, LR, train mode, prompts v/t/Dv/Dt or None, final views)
EXPECTED = {
    "k400": (32, 10, 256, 8e-6, "both", None, (1, 1)),
    "k400-image": (32, 10, 256, 8e-6, "image", None, (1, 1)),
    "k400-text": (32, 10, 256, 8e-6, "text", None, (1, 1)),
    "k400-supervised": (16, 30, 512, 2.2e-5, "both", None, (4, 3)),
    "k400-supervised-image": (16, 30, 256, 8e-6, "image", None, (4, 3)),
    "k400-supervised-text": (16, 30, 256, 8e-6, "text", None, (4, 3)),
    **{f"b2n-{ds}": (32, 11, 64, 2e-6, "both", None, (1, 1)) for ds in ("k400", "hmdb51", "ucf101", "ssv2")},
    **{f"fewshot-{ds}": (32, 50, 64, 2e-6, "both", None, (1, 1)) for ds in ("hmdb51", "ucf101", "ssv2")},
    **{f"prompt-b2n-{ds}": (32, 11, 64, 4e-2, "prompt", (16, 16, 9, 9), (1, 1)) for ds in ("hmdb51", "ucf101", "ssv2")},
    **{f"prompt-fewshot-{ds}": (32, 50, 64, 8e-3, "prompt", (10, 10, 12, 12), (1, 1))
       for ds in ("hmdb51", "ucf101", "ssv2")},
}


def describe(name):
    c = load_config(name)
    p = c.model.prompt
    prompts = (p.vision_tokens, p.text_tokens, p.vision_depth, p.text_depth) if p.enabled else None
    final = (c.eval.final_clips or c.eval.clips, c.eval.final_crops or c.eval.crops)
    return (c.data.frames, c.train.epochs, c.train.global_batch, c.train.lr, c.model.train, prompts, final)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recipe_matches_the_paper(name):
    assert describe(name) == EXPECTED[name]
    c = load_config(name)
    got = dict(arch=c.model.arch, input_size=c.data.input_size, betas=tuple(c.train.betas),
               weight_decay=c.train.weight_decay, warmup_epochs=c.train.warmup_epochs,
               min_lr_ratio=c.train.min_lr_ratio, mixup=c.train.mixup, cutmix=c.train.cutmix,
               mix_switch_prob=c.train.mix_switch_prob, label_smoothing=c.train.label_smoothing,
               color_jitter=c.train.color_jitter, grayscale=c.train.grayscale, seed=c.train.seed,
               micro_batch=c.train.micro_batch, mix_group=c.train.mix_group,
               lr_clock=(c.train.lr_clock_gpus, c.train.lr_clock_gpu_batch))
    assert got == COMMON
    if name.startswith(("b2n", "fewshot", "prompt")):
        assert c.train.eval_every == 10  # SAVE_FREQ 10: evaluated after epochs 1, 11, 21, ... and the last


def test_every_paper_recipe_is_checked():
    others = {"demo", "b2n", "fewshot", "prompt-b2n", "prompt-fewshot",
              "k400-b32", "k400-l14", "k400-l14-336"}  # backbones the paper did not train: tests/model/test_larger_backbones.py
    assert sorted(set(recipe_names()) - others) == sorted(EXPECTED)


def _spec_rows():
    spec = SHARED / "reference" / "SPEC.md"
    if not spec.is_file():
        pytest.skip("../shared/reference/SPEC.md not present")
    rows = []
    for line in spec.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 13 and cells[0].endswith(".yaml"):
            rows.append(cells)
    assert len(rows) == 67
    return rows


DS = {"hmdb": "hmdb51", "hmdb51": "hmdb51", "ucf": "ucf101", "ucf101": "ucf101", "ssv2": "ssv2", "k400": "k400"}


def _recipe_for(config: str) -> str | None:
    parts = config.split("/")
    variant = {"vifi_clip": "", "image_tuned_clip": "-image", "text_tuned_clip": "-text"}
    if "novel_eval" in config or parts[0] == "zero_shot" and parts[1] == "eval":
        return None  # evaluation-only configs: no training recipe
    if parts[0] == "zero_shot":
        return "k400" + variant[re.sub(r"^16_16_|\.yaml$", "", parts[-1])]
    if parts[0] == "fully_supervised":
        return "k400-supervised" + variant[re.sub(r"^16_16_|\.yaml$", "", parts[-1])]
    kind = {"finetuning_base2novel": "b2n", "prompting_base2novel": "prompt-b2n",
            "finetuning_few_shot": "fewshot", "prompting_few_shot": "prompt-fewshot"}[parts[1]]
    return f"{kind}-{DS[parts[2]]}"


def test_recipes_agree_with_every_training_config_in_the_spec_table():
    checked = set()
    for cells in _spec_rows():
        recipe = _recipe_for(cells[0])
        if recipe is None:
            continue
        frames, epochs, batch, lr, _, prompts, _ = describe(recipe)
        eff = int(re.search(r"\((\d+)\)", cells[4]).group(1))
        assert (frames, batch, epochs) == (int(cells[3]), eff, int(cells[6])), cells[0]
        # the LR clock and the mix groups follow the paper's per-GPU batch (bs/gpu of "4x2 (64)")
        per_gpu = int(cells[4].split("x")[0])
        c = load_config(recipe)
        assert (c.train.lr_clock_gpu_batch, c.train.mix_group) == (per_gpu, per_gpu), cells[0]
        assert c.train.lr_clock_gpus * per_gpu * int(cells[4].split("x")[1].split()[0]) == eff, cells[0]
        assert lr == pytest.approx(float(cells[5])), cells[0]
        spec_prompts = None if cells[10] == "-" else tuple(int(x) for x in cells[10].split("/"))
        assert prompts == spec_prompts, cells[0]
        checked.add(recipe)
    assert checked == set(EXPECTED)
