"""Deep V+L prompts (SPEC §1.4): placement, depth semantics, frozen weights, artifact binding."""

import copy

import pytest
import torch

from vifi.config import PromptConfig
from vifi.model.backbone import TINY_CLIP, build_clip
from vifi.model.prompts import Prompts
from vifi.model.vifi_clip import ViFiCLIP, class_prompts

NAMES = ["brush hair", "ApplyEyeMakeup", "pour"]


def four_layer_model(nv=3, nt=3, dv=3, dt=2, init=""):
    cfg = copy.deepcopy(TINY_CLIP)
    cfg["vision_cfg"]["layers"] = 4
    cfg["text_cfg"]["layers"] = 4
    torch.manual_seed(0)
    clip = build_clip(cfg)
    pcfg = PromptConfig(vision_tokens=nv, text_tokens=nt, vision_depth=dv, text_depth=dt, init=init)
    model = ViFiCLIP(clip, cfg, "frozen", prompts=Prompts(pcfg, clip))
    model.set_train_mode("prompt")
    return model, pcfg


def block_inputs(blocks):
    seen = {}
    handles = [b.register_forward_pre_hook(lambda m, args, kw=None, i=i: seen.__setitem__(i, args[0].detach()))
               for i, b in enumerate(blocks)]
    return seen, handles


def test_vision_prompts_replaced_before_blocks_1_to_depth_minus_1_then_carried():
    model, p = four_layer_model(dv=3)
    seen, handles = block_inputs(model.clip.visual.transformer.resblocks)
    with torch.no_grad():
        model.head.encode_frames(torch.randn(2, 3, 64, 64))
    for h in handles:
        h.remove()
    n, deep = p.vision_tokens, model.prompts.vision.deep
    assert len(deep) == 2  # depth 3 = input tokens + blocks 1 and 2
    for i in (1, 2):
        torch.testing.assert_close(seen[i][:, -n:], deep[i - 1].expand(2, -1, -1))
    # block 3 (≥ depth) receives block 2's outputs at the prompt slots, not a parameter
    assert not torch.allclose(seen[3][:, -n:], deep[1].expand(2, -1, -1))
    assert seen[0].shape[1] == 1 + (64 // 16) ** 2 + n  # cls + patches + prompts, appended at the end


def test_vision_input_prompts_are_appended_after_positional_embedding_before_ln_pre():
    model, p = four_layer_model(dv=1)
    v = model.clip.visual
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        got = model.head.encode_frames(images)
        x = v.conv1(images).flatten(2).transpose(1, 2)
        x = torch.cat([v.class_embedding.view(1, 1, -1).expand(2, -1, -1), x], 1) + v.positional_embedding
        x = torch.cat([x, model.prompts.vision.tokens.expand(2, -1, -1)], 1)
        x = v.transformer(v.ln_pre(x))
        naive = v.ln_post(x[:, 0]) @ v.proj
    torch.testing.assert_close(got, naive, rtol=1e-5, atol=1e-5)


def test_text_context_equal_to_the_x_token_embeddings_reproduces_plain_clip():
    model, p = four_layer_model(nt=3, dt=1)
    template = Prompts.template_for(p)
    assert template == "X X X {}."
    tokens = model.tokenize(class_prompts(NAMES, template))
    with torch.no_grad():
        model.prompts.text.tokens.copy_(model.clip.token_embedding(tokens[0, 1:4]))
        got = model.encode_text(tokens)
        plain = model.clip.encode_text(tokens)
    torch.testing.assert_close(got, plain, rtol=1e-5, atol=1e-5)


def test_text_deep_prompts_replace_positions_1_to_nt_for_every_class():
    model, p = four_layer_model(nt=3, dt=3)
    tokens = model.tokenize(class_prompts(NAMES, Prompts.template_for(p)))
    seen, handles = block_inputs(model.clip.transformer.resblocks)
    with torch.no_grad():
        model.encode_text(tokens)
    for h in handles:
        h.remove()
    deep = model.prompts.text.deep
    for i in (1, 2):
        torch.testing.assert_close(seen[i][:, 1:4], deep[i - 1].expand(len(NAMES), -1, -1))
        assert not torch.allclose(seen[i][:, 0], deep[i - 1][0])  # SOT untouched
    assert not torch.allclose(seen[3][:, 1:4], deep[1].expand(len(NAMES), -1, -1))


def test_short_context_starts_from_the_init_phrase_and_long_context_is_random():
    model, _ = four_layer_model(nt=3, dt=1)
    short = PromptConfig(text_tokens=3, text_depth=1, init="a photo of")
    assert Prompts.template_for(short) == "a photo of {}."
    prompts = Prompts(short, model.clip)
    ids = model.tokenize(["a photo of"])[0, 1:4]
    torch.testing.assert_close(prompts.text.tokens, model.clip.token_embedding(ids))
    long = PromptConfig(text_tokens=10, text_depth=1, init="a photo of a")
    assert Prompts.template_for(long) == " ".join(["X"] * 10) + " {}."


def test_preset_trainable_counts_match_spec_on_vit_b16():
    # SPEC §1.4: 16/16/9/9 -> 184,320 trainable numbers; 10/10/12/12 -> 153,600
    from vifi.model.backbone import arch_config

    clip = build_clip(arch_config("ViT-B-16"))
    for sizes, expected in (((16, 16, 9, 9), 184_320), ((10, 10, 12, 12), 153_600)):
        cfg = PromptConfig(vision_tokens=sizes[0], text_tokens=sizes[1], vision_depth=sizes[2], text_depth=sizes[3])
        assert sum(p.numel() for p in Prompts(cfg, clip).parameters()) == expected
    model, _ = four_layer_model(nv=5, nt=3, dv=3, dt=2)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 5 * 64 * 3 + 3 * 64 * 2


def test_prompt_training_changes_only_prompt_tensors():
    from vifi.config import RunConfig
    from vifi.engine.runtime import setup_runtime
    from vifi.engine.train import accumulate_step_gradients, build_optimizer

    model, p = four_layer_model()
    before = {k: v.clone() for k, v in model.clip.state_dict().items()}
    prompts_before = {k: v.clone() for k, v in model.prompts.state_dict().items()}
    runtime = setup_runtime("cpu", "fp32")
    tokens = model.tokenize(class_prompts(NAMES, Prompts.template_for(p)))
    opt = build_optimizer([q for q in model.parameters() if q.requires_grad], RunConfig(), runtime.device)
    for group in opt.param_groups:
        group["lr"] = 1e-2
    torch.manual_seed(3)
    for _ in range(3):
        batches = [(torch.randn(2, 2, 3, 64, 64), torch.eye(3)[[0, 2]])]
        accumulate_step_gradients(model, model.head, batches, tokens, None, runtime, local_batch=2)
        opt.step()
        opt.zero_grad()
    for k, v in model.clip.state_dict().items():
        assert torch.equal(v, before[k]), k
    changed = [k for k, v in model.prompts.state_dict().items() if not torch.equal(v, prompts_before[k])]
    assert sorted(changed) == sorted(prompts_before)


def test_prompt_artifact_is_small_and_refuses_another_base(tmp_path):
    from vifi.errors import VifiError
    from vifi.model.checkpoint import add_prompts, build_from_checkpoint, load_weights_into, save_weights

    torch.manual_seed(0)
    base_a = ViFiCLIP(build_clip(TINY_CLIP), TINY_CLIP, "both")
    save_weights(tmp_path / "a.safetensors", base_a)
    base_b = ViFiCLIP(build_clip(TINY_CLIP), TINY_CLIP, "both")
    save_weights(tmp_path / "b.safetensors", base_b)
    cfg = PromptConfig(vision_tokens=4, text_tokens=4, vision_depth=2, text_depth=2)
    model, _ = build_from_checkpoint(tmp_path / "a.safetensors")
    add_prompts(model, cfg, tmp_path / "a.safetensors")
    model.set_train_mode("prompt")
    save_weights(tmp_path / "prompts.safetensors", model, {"template": Prompts.template_for(cfg)})
    assert (tmp_path / "prompts.safetensors").stat().st_size < 2 * 1024 * 1024

    reloaded, meta = build_from_checkpoint(tmp_path / "prompts.safetensors")  # finds its base by path + hash
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(reloaded.head.encode_frames(images), model.head.encode_frames(images))

    other, _ = build_from_checkpoint(tmp_path / "b.safetensors")
    add_prompts(other, cfg, tmp_path / "b.safetensors")
    with pytest.raises(VifiError, match="was learned on base"):
        load_weights_into(other, tmp_path / "prompts.safetensors")


def test_prompt_mode_reads_underscores_as_spaces_in_names_and_init_phrase():
    # The reference's prompt learner writes "climb_stairs" as "climb stairs" and reads "a_photo of a" as
    # "a photo of a"; fine-tuning modes keep names as they are.
    model, pcfg = four_layer_model(nt=4, init="a_photo of a")
    template = Prompts.template_for(pcfg)
    assert template == "a photo of a {}."
    assert model.class_texts(["climb_stairs"], template) == ["a photo of a climb stairs."]
    spaced, _ = four_layer_model(nt=4, init="a photo of a")
    torch.testing.assert_close(model.prompts.text.tokens, spaced.prompts.text.tokens)  # same init embedding
    torch.manual_seed(0)
    plain = ViFiCLIP(build_clip(TINY_CLIP), TINY_CLIP, "both")
    assert plain.class_texts(["climb_stairs"], "a photo of a {}.") == ["a photo of a climb_stairs."]
    random_ctx, pcfg16 = four_layer_model(nt=16)
    assert random_ctx.class_texts(["climb_stairs"], Prompts.template_for(pcfg16)) == [" ".join(["X"] * 16) +
                                                                                     " climb stairs."]
