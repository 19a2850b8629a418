"""MMRL (trainers/mmrl.py, kit/representation_tokens.py): the representation
tokens and features against a hand-written forked CLIP, each loss term, the
test-time rules, proj_rep's draw inside CLIP's construction, training steps,
checkpoints (ours and the official layout) and the config checks, on the
tiny CLIP (2 text / 2 vision blocks)."""
import os

import pytest
import torch
import torch.nn.functional as F
from clip import model as clip_model_module

from clipwb.engine import build_trainer
from clipwb.errors import ConfigError
from clipwb.trainers.kit.prompt_learners import convert_legacy_state_dict
from clipwb.trainers.kit.representation_tokens import ProjRepDraw, check_rep_layers
from clipwb.trainers.mmrl import LOGIT_SCALE, MMRLOutput, mmrl_loss, evaluation_logits

from tests.tiny_clip import TINY_CLIP_KWARGS
from tests.trainer_kit import make_cfg, repeated_steps, write_two_class_images

OPTS = ["TRAINER.MMRL.REP_LAYERS", [1, 2], "TRAINER.MMRL.N_REP_TOKENS", 3,
        "TRAINER.MMRL.REP_DIM", 16, "TRAINER.MMRL.PREC", "fp32", "OPTIM.NAME", "adamw"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_two_class_images(tmp_path_factory.mktemp("two_class"))


def build(clip_path, data_root, out, opts=(), lr=1e-3):
    torch.manual_seed(0)
    return build_trainer(make_cfg("MMRL", clip_path, data_root, out, OPTS + list(opts), lr=lr))


@pytest.fixture(scope="module")
def shared(tiny_clip_path, data_root, tmp_path_factory):
    return build(tiny_clip_path, data_root, tmp_path_factory.mktemp("mmrl_run"))


# -- the model against a hand-written fork ---------------------------------------------------
def _block(block, x, mask=None):
    h = block.ln_1(x)
    x = x + block.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
    return x + block.mlp(block.ln_2(x))


def _with_tokens(x, tokens, layer, first):
    """[first token, tokens, rest]: inserted at ``first``, replacing later."""
    new = tokens.unsqueeze(1).expand(-1, x.shape[1], -1)
    rest = x[1:] if layer == first else x[1 + tokens.shape[0]:]
    return torch.cat([x[:1], new, rest])


def forked_features(model, images):
    """The official CustomCLIP's forward written out on the stock blocks:
    tokens after SOS / CLS at every layer (inserted at the first), the text
    causal mask rebuilt for the longer sequence, EOT moved by K; f_rep the
    mean of ln_post over the token outputs times proj_rep; logits x 100."""
    learner = model.representation_learner
    rep = learner.compound_rep_tokens
    k = rep.shape[0]
    clip = model.text_encoder
    x = (model.prompt_embeddings + clip.positional_embedding).permute(1, 0, 2)
    for layer, block in enumerate(clip.blocks):
        x = _with_tokens(x, learner.compound_rep_tokens_r2tproj[layer](rep), layer, 0)
        mask = torch.empty(x.shape[0], x.shape[0]).fill_(float("-inf")).triu_(1)
        x = _block(block, x, mask)
    x = clip.ln_final(x.permute(1, 0, 2))
    eot = model.tokenized_prompts.argmax(-1) + k
    text = x[torch.arange(x.shape[0]), eot] @ clip.text_projection
    v = model.image_encoder.visual
    y = v.conv1(images).flatten(2).permute(0, 2, 1)
    cls = v.class_embedding + torch.zeros(y.shape[0], 1, y.shape[-1])
    y = v.ln_pre(torch.cat([cls, y], 1) + v.positional_embedding).permute(1, 0, 2)
    for layer, block in enumerate(v.transformer.resblocks):
        y = _with_tokens(y, learner.compound_rep_tokens_r2vproj[layer](rep), layer, 0)
        y = _block(block, y)
    y = y.permute(1, 0, 2)
    image = v.ln_post(y[:, 0]) @ v.proj
    image_rep = v.ln_post(y[:, 1:1 + k]).mean(dim=1) @ learner.proj_rep
    image, image_rep, text = (t / t.norm(dim=-1, keepdim=True) for t in (image, image_rep, text))
    return 100.0 * image @ text.t(), 100.0 * image_rep @ text.t(), image, text


@pytest.mark.parametrize("full", [False, True])
def test_features_and_logits_are_the_forked_clips(shared, full):
    model = shared.model
    for encoder in (model.text_encoder, model.image_encoder):
        encoder.full_sequences = full
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    try:
        with torch.no_grad():
            out = model.forward_features(images)
            logits, logits_rep, image, text = forked_features(model, images)
    finally:
        for encoder in (model.text_encoder, model.image_encoder):
            encoder.full_sequences = False
    for ours, theirs in ((out.logits, logits), (out.logits_rep, logits_rep),
                         (out.image_features, image), (out.text_features, text)):
        assert torch.allclose(ours, theirs, atol=1e-4)
    assert torch.allclose(out.logits_fusion, 0.7 * logits + 0.3 * logits_rep, atol=1e-4)
    assert (out.logits - out.logits_rep).abs().max() > 1e-3  # two different features
    assert LOGIT_SCALE == 100.0


@pytest.mark.parametrize("full", [False, True])
def test_the_shared_prefix_gives_the_full_passes_numbers(shared, full):
    """The blocks before the first representation layer run once for the
    frozen pass and the tokens' pass (and once for the text): the same
    numbers as the encoders' own passes, bit for bit with full sequences."""
    from clipwb.trainers.kit.representation_tokens import representation_hooks

    model = shared.model
    blocks, first = list(model.rep_blocks), model.prefix.first
    model.rep_blocks[:] = [1]  # insert at the second block: a shared block before it
    model.prefix.first, model.prefix._text = 1, {}
    for encoder in (model.text_encoder, model.image_encoder):
        encoder.full_sequences = full
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    same = torch.equal if full else (lambda a, b: torch.allclose(a, b, atol=1e-5))
    try:
        with torch.no_grad():
            out = model.forward_features(images, frozen=True)
            text_tokens, vision_tokens = model.representation_learner()
            clip = model.image_encoder(images)
            text = model.text_encoder(model.prompt_embeddings, model.tokenized_prompts,
                                      hooks=representation_hooks(text_tokens[:1], [1]))
            image = model.image_encoder.encode(
                images, hooks=representation_hooks(vision_tokens[:1], [1])).features
    finally:
        model.rep_blocks[:] = blocks
        model.prefix.first, model.prefix._text = first, {}
        for encoder in (model.text_encoder, model.image_encoder):
            encoder.full_sequences = False
    assert same(out.image_features_clip, clip / clip.norm(dim=-1, keepdim=True))
    assert same(out.text_features, text / text.norm(dim=-1, keepdim=True))
    assert same(out.image_features, image / image.norm(dim=-1, keepdim=True))


def test_the_tokens_change_the_text_features(shared):
    model = shared.model
    with torch.no_grad():
        text, _ = model.representation_learner()
        ours = model.encode_text(text)
        plain = model.text_encoder(model.prompt_embeddings, model.tokenized_prompts)
    assert (ours - plain).abs().max() > 1e-3
    # the frozen hand-crafted features are the plain ones, normalised
    assert torch.allclose(model.text_features_clip, F.normalize(plain, dim=-1), atol=1e-6)


# -- the loss ----------------------------------------------------------------------------------
def test_each_loss_term_against_hand_computed():
    gen = torch.Generator().manual_seed(0)
    logits, logits_rep = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen)
    f, f_clip = torch.randn(4, 5, generator=gen), torch.randn(4, 5, generator=gen)
    w, w_clip = torch.randn(3, 5, generator=gen), torch.randn(3, 5, generator=gen)
    labels = torch.tensor([0, 2, 1, 2])

    def ce(z):
        z = z.double()
        return -(z[torch.arange(4), labels] - z.exp().sum(-1).log()).mean()

    def cos(a, b):
        a, b = a.double(), b.double()
        return ((a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))).mean()

    alpha, reg = 0.7, 3.0
    # each term alone (the others switched off by their weight or equal features)
    only_ce = mmrl_loss(logits, logits_rep, f, w, f, w, labels, 1.0, 0.0)
    assert abs(only_ce.item() - ce(logits).item()) < 1e-5
    only_rep = mmrl_loss(logits, logits_rep, f, w, f, w, labels, 0.0, 0.0)
    assert abs(only_rep.item() - ce(logits_rep).item()) < 1e-5
    only_image = mmrl_loss(logits, logits, f, w, f_clip, w, labels, 1.0, 1.0) - ce(logits)
    assert abs(only_image.item() - (1 - cos(f, f_clip)).item()) < 1e-5
    only_text = mmrl_loss(logits, logits, f, w, f, w_clip, labels, 1.0, 1.0) - ce(logits)
    assert abs(only_text.item() - (1 - cos(w, w_clip)).item()) < 1e-5
    total = mmrl_loss(logits, logits_rep, f, w, f_clip, w_clip, labels, alpha, reg)
    expected = (alpha * ce(logits) + (1 - alpha) * ce(logits_rep)
                + reg * (1 - cos(f, f_clip)) + reg * (1 - cos(w, w_clip)))
    assert abs(total.item() - expected.item()) < 1e-5


def test_training_loss_is_the_official_loss_of_the_batch(shared):
    trainer = shared
    images, labels = trainer.parse_batch_train(next(iter(trainer.train_loader_x)))
    model = trainer.model
    with torch.no_grad():
        loss, summary = trainer.compute_loss(images, labels)
        out = model.forward_features(images)
        f_clip = model.image_encoder.visual(images)
        f_clip = f_clip / f_clip.norm(dim=-1, keepdim=True)
        expected = mmrl_loss(out.logits, out.logits_rep, out.image_features, out.text_features,
                             f_clip, model.text_features_clip, labels, 0.7, 1.0)
    assert abs(loss.item() - expected.item()) < 1e-5
    assert summary["acc"] == pytest.approx(
        100.0 * (out.logits_fusion.argmax(-1) == labels).float().mean().item())


# -- the test-time rules -----------------------------------------------------------------------
def test_test_time_rules_are_the_official_ones():
    out = MMRLOutput(logits="z", logits_rep="rep", logits_fusion="fusion",
                     image_features=None, text_features=None)
    assert evaluation_logits(out, "B2N", "base", "Caltech101") == "fusion"
    assert evaluation_logits(out, "B2N", "new", "Caltech101") == "z"
    assert evaluation_logits(out, "B2N", "all", "Caltech101") == "z"
    assert evaluation_logits(out, "FS", "all", "Caltech101") == "fusion"
    assert evaluation_logits(out, "CD", "all", "ImageNet") == "fusion"
    assert evaluation_logits(out, "CD", "all", "ImageNetV2") == "z"
    with pytest.raises(ConfigError, match="TASK"):
        evaluation_logits(out, "XD", "all", "ImageNet")


@pytest.mark.parametrize("task,sub,which", [("B2N", "base", "logits_fusion"),
                                            ("B2N", "new", "logits"),
                                            ("FS", "all", "logits_fusion"),
                                            ("CD", "all", "logits")])
def test_the_evaluation_scores_the_rule_s_logits(shared, monkeypatch, task, sub, which):
    cfg = shared.cfg.clone()
    cfg.defrost()
    cfg.TASK, cfg.DATASET.SUBSAMPLE_CLASSES = task, sub
    monkeypatch.setattr(shared, "cfg", cfg)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = getattr(shared.model.forward_features(images), which)
        got = shared.model_inference(images)
    assert torch.equal(got, expected.float())


# -- construction draws --------------------------------------------------------------------------
def test_proj_rep_is_drawn_where_the_fork_draws_it(monkeypatch):
    """A hand-written fork: the stock vision tower plus proj_rep drawn at the
    end of its constructor (right after proj); every weight of the stock
    build inside ProjRepDraw.recording() and proj_rep equal the fork's."""
    stock = clip_model_module.VisionTransformer

    class ForkedVisionTransformer(stock):
        def __init__(self, input_resolution, patch_size, width, layers, heads, output_dim):
            super().__init__(input_resolution, patch_size, width, layers, heads, output_dim)
            self.proj_rep = torch.nn.Parameter(width ** -0.5 * torch.randn(width, output_dim))

    monkeypatch.setattr(clip_model_module, "VisionTransformer", ForkedVisionTransformer)
    torch.manual_seed(5)
    fork = clip_model_module.CLIP(**TINY_CLIP_KWARGS)
    after_fork = torch.rand(3)
    monkeypatch.setattr(clip_model_module, "VisionTransformer", stock)
    torch.manual_seed(5)
    draws = ProjRepDraw()
    with draws.recording():
        ours = clip_model_module.CLIP(**TINY_CLIP_KWARGS)
    assert torch.equal(torch.rand(3), after_fork)
    assert torch.equal(draws.proj_rep, fork.visual.proj_rep)
    theirs = fork.state_dict()
    for name, value in ours.state_dict().items():
        assert torch.equal(value, theirs[name]), name
    with draws.recording():  # a second build draws again, the first value is kept
        clip_model_module.CLIP(**TINY_CLIP_KWARGS)
    assert torch.equal(draws.proj_rep, fork.visual.proj_rep)


def test_projections_start_equal_and_tokens_are_small(shared):
    learner = shared.model.representation_learner
    for projs in (learner.compound_rep_tokens_r2tproj, learner.compound_rep_tokens_r2vproj):
        assert len(projs) == 2
        assert torch.equal(projs[0].weight, projs[1].weight)
    assert learner.compound_rep_tokens.shape == (3, 16)
    assert learner.compound_rep_tokens.std() < 0.05
    assert learner.proj_rep.shape == (64, 64) and learner.proj_rep.dtype == torch.float32


# -- training and checkpoints -------------------------------------------------------------------
def test_steps_decrease_the_loss_and_checkpoints_round_trip(tiny_clip_path, data_root,
                                                            tmp_path, shared):
    trainer = build(tiny_clip_path, data_root, tmp_path / "a", lr=1e-2)
    learned = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert learned == {"representation_learner." + n for n in (
        "compound_rep_tokens", "proj_rep",
        "compound_rep_tokens_r2tproj.0.weight", "compound_rep_tokens_r2tproj.0.bias",
        "compound_rep_tokens_r2tproj.1.weight", "compound_rep_tokens_r2tproj.1.bias",
        "compound_rep_tokens_r2vproj.0.weight", "compound_rep_tokens_r2vproj.0.bias",
        "compound_rep_tokens_r2vproj.1.weight", "compound_rep_tokens_r2vproj.1.bias")}
    losses = repeated_steps(trainer)
    assert losses[-1] < losses[0]
    trainer.save_model(1, str(tmp_path / "a"))
    other = shared
    before = {k: v.clone() for k, v in other.model.representation_learner.state_dict().items()}
    other.load_model(str(tmp_path / "a"), epoch=2)
    saved = trainer.model.representation_learner.state_dict()
    loaded = other.model.representation_learner.state_dict()
    assert set(saved) == set(loaded)
    for name in saved:
        assert torch.equal(saved[name], loaded[name]), name
    other.model.representation_learner.load_state_dict(before)


def test_an_official_checkpoint_s_names_are_converted():
    """The official code saves its whole CustomCLIP: the learner's entries
    and the vision tower's proj_rep are kept, the frozen weights dropped."""
    value = torch.zeros(1)
    official = {"representation_learner.compound_rep_tokens": value,
                "representation_learner.compound_rep_tokens_r2vproj.0.weight": value,
                "image_encoder.proj_rep": value, "image_encoder.conv1.weight": value,
                "text_encoder.transformer.resblocks.0.ln_1.weight": value,
                "prompt_embeddings": value}
    assert set(convert_legacy_state_dict(official)) == {
        "compound_rep_tokens", "compound_rep_tokens_r2vproj.0.weight", "proj_rep"}


# -- config checks --------------------------------------------------------------------------------
def test_rep_layers_are_checked_against_both_towers():
    assert check_rep_layers([6, 7, 8, 9, 10, 11, 12], 12, 12) == [5, 6, 7, 8, 9, 10, 11]
    for bad in ([], [3, 2], [0, 1], [2, 2], [4]):
        with pytest.raises(ConfigError, match="REP_LAYERS"):
            check_rep_layers(bad, 3, 4)


@pytest.mark.parametrize("key,value,match", [("TASK", "XD", "TASK"),
                                             ("TRAINER.MMRL.REP_LAYERS", [3], "REP_LAYERS"),
                                             ("TRAINER.MMRL.REP_LAYERS", [], "REP_LAYERS")])
def test_bad_config_is_one_sentence(tiny_clip_path, data_root, tmp_path, key, value, match):
    with pytest.raises(ConfigError, match=match):
        build(tiny_clip_path, data_root, tmp_path, [key, value])


# -- scripts --------------------------------------------------------------------------------------
def test_scripts_pass_the_official_per_dataset_values_and_task(tmp_path):
    """As the official train.py and scripts: TASK, the per-dataset values of
    its trainers/config.py (EuroSAT: REP_DIM 2048, REG_WEIGHT 0.01; Caltech101
    0.5; ...), vit_b16_imagenet on ImageNet; cross-dataset REG_WEIGHT 0.2 and
    REP_DIM 512; few-shot TASK FS; a user's KEY VALUE comes last."""
    from tests.test_scripts import calls, flag, opts_of, run_script, stub_environment

    env = stub_environment(tmp_path, ("eurosat", "caltech101", "imagenet", "dtd", "toy"))
    expected = {"eurosat": {"TASK": "B2N", "TRAINER.MMRL.REP_DIM": "2048",
                            "TRAINER.MMRL.REG_WEIGHT": "0.01"},
                "caltech101": {"TASK": "B2N", "TRAINER.MMRL.REG_WEIGHT": "0.5"},
                "imagenet": {"TASK": "B2N", "TRAINER.MMRL.REG_WEIGHT": "0.5"},
                "toy": {"TASK": "B2N"}}
    for dataset in expected:
        proc = run_script(env, "mmrl/base2new.sh", dataset, 1)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = calls(env)
    assert len(runs) == 2 * len(expected)
    for (train, test), (dataset, values) in zip(zip(runs[::2], runs[1::2]), expected.items()):
        for argv in (train, test):
            opts = dict(opts_of(argv))
            assert {k: v for k, v in opts.items() if k.startswith(("TASK", "TRAINER"))} == \
                values, dataset
        cfg = os.path.basename(flag(train, "--config-file"))
        assert cfg == {"imagenet": "vit_b16_imagenet.yaml", "toy": "toy.yaml"}.get(
            dataset, "vit_b16.yaml")
    proc = run_script(env, "mmrl/xd_train.sh", 1)
    assert proc.returncode == 0, proc.stderr
    proc = run_script(env, "mmrl/xd_test.sh", "eurosat", 1)
    assert proc.returncode == 0, proc.stderr
    for argv in calls(env)[-2:]:
        assert dict(opts_of(argv))["TRAINER.MMRL.REP_DIM"] == "512"
        assert dict(opts_of(argv))["TRAINER.MMRL.REG_WEIGHT"] == "0.2"
        assert dict(opts_of(argv))["TASK"] == "CD"
    proc = run_script(env, "mmrl/few_shot.sh", "dtd", 4, 1, "TRAINER.MMRL.REG_WEIGHT", "2.0")
    assert proc.returncode == 0, proc.stderr
    few = calls(env)[-1]
    assert os.path.basename(flag(few, "--config-file")) == "vit_b16_few_shot.yaml"
    assert ("TASK", "FS") in opts_of(few)
    assert opts_of(few)[-1] == ("TRAINER.MMRL.REG_WEIGHT", "2.0")  # the user's, last
    # the reproduce loop: the official config per dataset, both tables
    proc = run_script(env, "mmrl/reproduce_base2new.sh", DATASETS="imagenet caltech101",
                      SEEDS="2")
    assert proc.returncode == 0, proc.stderr
    loop = calls(env)[-4:]
    assert [os.path.basename(flag(a, "--config-file")) for a in loop] == [
        "vit_b16_imagenet.yaml"] * 2 + ["vit_b16.yaml"] * 2
    assert proc.stdout.count("Average") == 2


# -- the plugin ------------------------------------------------------------------------------------
def test_plugin_adds_task_where_missing_and_keeps_a_host_s_own():
    """MMRL's top-level TASK (a value, not a node): added to a host config
    that lacks it; an MMRL checkout's own TASK and TRAINER.MMRL values stay."""
    import clipwb.plugin
    from clipwb.engine import CfgNode, get_cfg_default

    cfg = get_cfg_default()
    clipwb.plugin.extend_cfg(cfg)
    assert cfg.TASK == "B2N" and cfg.TRAINER.MMRL.REP_DIM == 512
    host = get_cfg_default()
    host.TASK = "CD"
    host.TRAINER.MMRL = CfgNode()
    host.TRAINER.MMRL.REG_WEIGHT = 0.2
    clipwb.plugin.extend_cfg(host)
    assert host.TASK == "CD" and host.TRAINER.MMRL.REG_WEIGHT == 0.2
