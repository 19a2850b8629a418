"""TCP (trainers/tcp.py): the class-aware tokens inserted before text block 8,
its loss, training steps, a checkpoint round trip and its config checks, on a
tiny CLIP with 9 text blocks (so that block 8 exists)."""
import os

import pytest
import torch
import torch.nn.functional as F

from clipwb.engine import build_trainer
from clipwb.errors import ConfigError
from clipwb.trainers.tcp import (ADAM_EPS, CLASS_AWARE_LAYER, KG_WEIGHT, TCP_PROMPT_TEMPLATES,
                                 mix_class_tokens, tcp_templates)

from tests.tiny_clip import TINY_CLIP_KWARGS
from tests.trainer_kit import make_cfg, repeated_steps, write_two_class_images

OPTS = ["TRAINER.COOP.N_CTX", 4, "OPTIM.NAME", "adam"]


@pytest.fixture(scope="module")
def deep_clip_path(tmp_path_factory):
    from clip.model import CLIP

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = CLIP(**dict(TINY_CLIP_KWARGS, transformer_layers=CLASS_AWARE_LAYER + 1))
    path = tmp_path_factory.mktemp("clip") / "tiny_clip_9_text_layers.pt"
    torch.save(model.float().state_dict(), str(path))
    return str(path)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_two_class_images(tmp_path_factory.mktemp("two_class"))


def build(deep_clip_path, data_root, tmp_path, opts=(), lr=2e-4):
    torch.manual_seed(0)
    return build_trainer(make_cfg("TCP", deep_clip_path, data_root, tmp_path,
                                  OPTS + list(opts), lr=lr))


@pytest.fixture(scope="module")
def shared(deep_clip_path, data_root, tmp_path_factory):
    """One trainer for the tests that only read it (the last test loads a
    checkpoint into it)."""
    return build(deep_clip_path, data_root, tmp_path_factory.mktemp("tcp_run"))


def test_mix_class_tokens_against_hand_computed():
    tokens = torch.arange(2 * 6 * 3, dtype=torch.float32).reshape(2, 6, 3)
    class_tokens = torch.ones(2, 4, 3)
    mixed = mix_class_tokens(class_tokens, tokens, weight=0.25)
    expected = 0.25 * 1.0 + 0.75 * tokens[:, 1:5]
    assert torch.equal(mixed, expected)
    assert torch.equal(mix_class_tokens(class_tokens, tokens), class_tokens)  # weight 1.0


def test_templates_of_a_dataset():
    assert tcp_templates("OxfordPets") == ("X X X X {}, a type of pet.",
                                           "a photo of a {}, a type of pet.")
    assert tcp_templates("FGVCAircraft")[1] == "a photo of an aircraft {}."
    assert tcp_templates("Unknown") == ("X X X X {}.", "a photo of a {}.")
    assert len(TCP_PROMPT_TEMPLATES) == 15


def reference_text_features(model, learner):
    """The prompted text encoder written out: stock blocks 0..7, the
    context positions replaced by the class tokens, block 8, EOT, projection."""
    encoder = model.text_encoder
    blocks = encoder.blocks
    prompts = learner.assemble(learner.ctx)
    x = (prompts + encoder.positional_embedding).permute(1, 0, 2)
    for layer, block in enumerate(blocks):
        if layer == CLASS_AWARE_LAYER:
            tokens = learner.class_tokens().float().permute(1, 0, 2)
            x = torch.cat([x[:1], tokens, x[5:]], dim=0)
        x = block(x)
    x = encoder.ln_final(x.permute(1, 0, 2))
    eot = learner.tokenized_prompts.argmax(dim=-1)
    features = x[torch.arange(x.shape[0]), eot] @ encoder.text_projection
    return F.normalize(features, dim=-1)


def test_class_aware_tokens_replace_the_context_before_block_8(shared):
    model, learner = shared.model, shared.model.prompt_learner
    bias = learner.meta_net.linear2.bias
    saved = bias.detach().clone()
    with torch.no_grad():
        bias.add_(10.0)  # class tokens far from the context
        prompts = learner()
        ours = model.encode_prompts(prompts)
        assert torch.allclose(ours, reference_text_features(model, learner), atol=1e-6)
        plain = F.normalize(model.text_encoder(prompts.text, learner.tokenized_prompts), dim=-1)
        assert (ours - plain).abs().max() > 1e-4  # the insertion changes the features
        bias.copy_(saved)
    deep = learner().text_deep
    assert deep(CLASS_AWARE_LAYER - 1, torch.zeros(2, 10, 64)) is None
    assert deep(CLASS_AWARE_LAYER, torch.zeros(2, 10, 64)).shape == (2, 4, 64)


def test_loss_is_cross_entropy_plus_8_times_knowledge_term(shared):
    trainer = shared
    images, labels = trainer.parse_batch_train(next(iter(trainer.train_loader_x)))
    with torch.no_grad():
        loss, _ = trainer.compute_loss(images, labels)
        out = trainer.model.forward_features(images)
        w = out.text_features.double()
        w_clip = trainer.model.prompt_learner.handcrafted_text_features.double()
        cos = (w * w_clip).sum(-1) / (w.norm(dim=-1) * w_clip.norm(dim=-1))
        log_p = out.logits.double().log_softmax(dim=-1)
        ce = -log_p[torch.arange(len(labels)), labels].mean()
        expected = ce + KG_WEIGHT * (1 - cos.mean())
    assert KG_WEIGHT == 8.0
    assert abs(loss.item() - expected.item()) < 1e-3


@pytest.mark.parametrize("key,value,fix", [("TRAINER.COOP.N_CTX", 16, "N_CTX 4"),
                                           ("TRAINER.COOP.CSC", True, "CSC False")])
def test_config_outside_tcp_is_one_sentence(deep_clip_path, data_root, tmp_path, key, value,
                                            fix):
    with pytest.raises(ConfigError, match=fix):
        build(deep_clip_path, data_root, tmp_path, [key, value])


def test_steps_decrease_the_loss_and_checkpoint_round_trip(deep_clip_path, data_root,
                                                           tmp_path, shared):
    trainer = build(deep_clip_path, data_root, tmp_path / "a", lr=1e-3)
    assert all(g["eps"] == ADAM_EPS for g in trainer.optim.param_groups)
    learned = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert learned == {"prompt_learner.ctx", "prompt_learner.meta_net.linear1.weight",
                       "prompt_learner.meta_net.linear1.bias",
                       "prompt_learner.meta_net.linear2.weight",
                       "prompt_learner.meta_net.linear2.bias"}
    losses = repeated_steps(trainer)
    assert losses[-1] < losses[0]
    trainer.save_model(1, str(tmp_path / "a"))
    other = shared
    other.load_model(str(tmp_path / "a"), epoch=2)  # save_model(1) writes epoch 2
    saved = trainer.model.prompt_learner.state_dict()
    loaded = other.model.prompt_learner.state_dict()
    for name in ("ctx", "meta_net.linear1.weight", "meta_net.linear2.bias"):
        assert torch.equal(saved[name], loaded[name])


def test_scripts_train_imagenet_for_25_epochs_as_the_official_train_py(tmp_path):
    from tests.test_scripts import calls, flag, opts_of, run_script, stub_environment

    env = stub_environment(tmp_path, ("imagenet", "caltech101"))
    for dataset, epochs in (("imagenet", "25"), ("caltech101", "50")):
        proc = run_script(env, "tcp/base2new.sh", dataset, 1)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    (train_in, test_in), (train_cal, test_cal) = calls(env)[:2], calls(env)[2:]
    assert ("OPTIM.MAX_EPOCH", "25") in opts_of(train_in)
    assert flag(test_in, "--load-epoch") == "25"
    assert flag(train_in, "--output-dir").endswith(  # the default run's folder, no variant
        os.path.join("imagenet", "shots_16", "TCP", "vit_b16_ep100_ctxv1", "seed1"))
    assert "OPTIM.MAX_EPOCH" not in dict(opts_of(train_cal))
    assert flag(test_cal, "--load-epoch") == "50"
    # another config: no official epochs forced
    proc = run_script(env, "tcp/base2new_train.sh", "imagenet", 2, CFG="toy")
    assert proc.returncode == 0, proc.stderr
    assert "OPTIM.MAX_EPOCH" not in dict(opts_of(calls(env)[-1]))
