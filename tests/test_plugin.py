"""The plugin: registration without side effects, host names kept, config keys,
CLIP from a fork, the encoders on fork-shaped blocks."""
import copy
import os
import subprocess
import sys

import pytest
import torch

from clipwb import registration
from clipwb.engine import CfgNode, get_cfg_default
from tests.e2e_helpers import REPO, subprocess_env
from tests.host_checkout import write_host
from tests.tiny_clip import build_tiny_clip

PLUGIN_TRAINERS = ["DiSa", "ISP", "GuiDGExpert", "GuiDG", "CLIPood", "ERMWiSEFT", "UEOWiSEFT",
                   "KgCoOp", "TCP", "ProGrad", "MultiModalAdapter", "MMRL",
                   "ExtrasLinearProbeCoOp", "ExtrasLinearProbeCoCoOp", "ExtrasLinearProbeKgCoOp",
                   "ExtrasLinearProbeMaPLe", "ExtrasLinearProbePromptSRC"]


def run_python(code, cwd=REPO, **env):
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=subprocess_env(DASSL_BACKEND="builtin", **env))
    return proc


def test_importing_the_code_registers_nothing_and_the_plugin_registers_once():
    code = """
import clipwb.trainers.disa.trainer, clipwb.trainers.isp.trainer, clipwb.trainers.guidg.trainer
import clipwb.trainers.coop, clipwb.datasets.toy, clipwb.datasets.pacs
from clipwb.engine import TRAINER_REGISTRY, DATASET_REGISTRY
print("before", sorted(TRAINER_REGISTRY.registered_names()), sorted(DATASET_REGISTRY.registered_names()))
import clipwb.plugin
print("after", sorted(TRAINER_REGISTRY.registered_names()))
print("datasets", sorted(DATASET_REGISTRY.registered_names()))
print("again", clipwb.plugin.register())
"""
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "before [] []" in lines
    after = next(line for line in lines if line.startswith("after "))
    assert after == "after " + str(sorted(PLUGIN_TRAINERS))  # no CoOp / IVLP: the host's
    datasets = next(line for line in lines if line.startswith("datasets "))
    for name in ("ToyShapes", "ToyShapesDG", "PACS", "Caltech101"):
        assert "'{}'".format(name) in datasets
    assert any(line.startswith("clipwb plugin (built-in Dassl): registered DiSa, ISP")
               for line in lines)
    again = next(line for line in lines if line.startswith("again "))
    assert "registered=[]" in again and "kept=[]" in again  # a second call changes nothing


def test_a_name_the_host_registered_stays_the_hosts():
    code = """
from clipwb.engine import TRAINER_REGISTRY, DATASET_REGISTRY, TrainerX, DatasetBase

@TRAINER_REGISTRY.register()
class CoOp(TrainerX):
    pass

@TRAINER_REGISTRY.register()
class DiSa(TrainerX):
    pass

@TRAINER_REGISTRY.register()
class KgCoOp(TrainerX):  # a KgCoOp checkout's own
    pass

@DATASET_REGISTRY.register()
class Caltech101(DatasetBase):
    pass

class VLCS(DatasetBase):  # the checkout's own DG reader
    pass

class PACS(DatasetBase):  # a reader of the Dassl library itself
    pass

PACS.__module__ = "dassl.data.datasets.dg.pacs"
DATASET_REGISTRY.register(VLCS)
DATASET_REGISTRY.register(PACS)
host = (CoOp, DiSa, Caltech101, KgCoOp)
import clipwb.plugin
assert DATASET_REGISTRY.get("VLCS") is VLCS, "a checkout's reader was replaced"
assert DATASET_REGISTRY.get("PACS").__module__ == "clipwb.datasets.pacs"
assert TRAINER_REGISTRY.get("DiSa") is host[1], "overwritten"
assert DATASET_REGISTRY.get("Caltech101") is host[2], "overwritten"
assert TRAINER_REGISTRY.get("ISP").__module__ == "clipwb.trainers.isp.trainer"
assert TRAINER_REGISTRY.get("KgCoOp") is host[3], "overwritten"
assert TRAINER_REGISTRY.get("TCP").__module__ == "clipwb.trainers.tcp"
print(clipwb.plugin.REPORT[0].kept, clipwb.plugin.REPORT[1].kept)
"""
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert "['DiSa', 'KgCoOp'] ['Caltech101', 'VLCS']" in proc.stdout
    line = next(line for line in proc.stdout.splitlines() if line.startswith("clipwb plugin"))
    assert "registered ISP, GuiDGExpert, GuiDG, CLIPood, ERMWiSEFT, UEOWiSEFT, TCP, ProGrad, " in line
    assert "kept the ones already registered: DiSa, KgCoOp, Caltech101, VLCS" in line
    assert line.endswith("GuiDG's DomainBed readers replace Dassl's own PACS")


def test_dassl_readers_are_replaced_only_where_asked():
    """From this repository's root GuiDG's readers replace Dassl-library readers
    of the same name; a host's own reader is never replaced."""
    from clipwb.engine.builtin import Registry

    library = type("PACS", (), {"__module__": "dassl.data.datasets.dg.pacs"})
    host = type("VLCS", (), {"__module__": "datasets.vlcs"})
    ours = {"PACS": type("PACS", (), {}), "VLCS": type("VLCS", (), {})}
    registry = Registry("DATASET")
    registry.register(library)
    registry.register(host)
    report = registration.register_objects(registry, ours, replace=("PACS", "VLCS"))
    assert report.replaced == ["PACS"] and report.kept == ["VLCS"]
    assert registry.get("PACS") is ours["PACS"] and registry.get("VLCS") is host


def test_builtin_backend_in_a_real_dassl_process_is_one_clear_error():
    code = """
import sys, types
fake = types.ModuleType("dassl.engine")
class Reg:
    _obj_map = {}
fake.TRAINER_REGISTRY = Reg()
sys.modules["dassl"] = types.ModuleType("dassl")
sys.modules["dassl.engine"] = fake
from clipwb.errors import UserInputError
try:
    import clipwb.plugin
except UserInputError as err:
    print("ERROR", err)
"""
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert "ERROR DASSL_BACKEND=builtin" in proc.stdout
    assert "Unset DASSL_BACKEND" in proc.stdout


def test_extend_cfg_adds_our_keys_and_never_touches_the_hosts():
    import clipwb.plugin

    cfg = get_cfg_default()
    cfg.TRAINER.IVLP = CfgNode()
    cfg.TRAINER.IVLP.N_CTX_TEXT = 7  # the host's node, fewer keys than ours
    cfg.DATASET.SUBSAMPLE_CLASSES = "base"
    host_dump = cfg.TRAINER.IVLP.dump()
    clipwb.plugin.extend_cfg(cfg)
    assert cfg.TRAINER.IVLP.dump() == host_dump
    assert cfg.DATASET.SUBSAMPLE_CLASSES == "base"
    assert cfg.TRAINER.DISA.MASK_RATIO == pytest.approx(
        clipwb.plugin.project_keys().TRAINER.DISA.MASK_RATIO)
    for node in ("DISA", "ISP", "GUIDG", "CLIPOOD", "ERMWISEFT", "UEOWISEFT", "COOP"):
        assert node in cfg.TRAINER
    assert cfg.DATASET.DG_TRAIN_POOL == "B"
    once = cfg.dump()
    clipwb.plugin.extend_cfg(cfg)
    assert cfg.dump() == once  # idempotent


def coop_checkout_cfg():
    """A config as a CoOp checkout's ``setup_cfg`` builds it before merging
    files: its ``TRAINER.COOP`` node (values of the host's own, not ours)."""
    cfg = get_cfg_default()
    cfg.TRAINER.COOP = CfgNode()
    cfg.TRAINER.COOP.N_CTX = 7
    cfg.TRAINER.COOP.CSC = True
    cfg.TRAINER.COOP.CTX_INIT = "a picture of"
    cfg.TRAINER.COOP.PREC = "amp"
    cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = "middle"
    return cfg


def test_extend_cfg_adds_only_the_missing_baseline_keys_to_the_hosts_coop_node():
    """KgCoOp's W joins a CoOp checkout's TRAINER.COOP, whose values stay;
    ProGrad's LOSS is added whole; a host's LOSS keeps its values."""
    import clipwb.plugin

    cfg = coop_checkout_cfg()
    host = dict(cfg.TRAINER.COOP)
    clipwb.plugin.extend_cfg(cfg)
    # kgcoop.py's default W; DePT's KgCoOp configs carry ALPHA (unused)
    assert dict(cfg.TRAINER.COOP) == dict(host, W=1.0, ALPHA=1.0)
    assert dict(cfg.LOSS) == {"NAME": "prograd", "T": 1.0, "LAMBDA": 1.0}
    once = cfg.dump()
    clipwb.plugin.extend_cfg(cfg)
    assert cfg.dump() == once
    # a KgCoOp / ProGrad checkout's own values stay too
    cfg = coop_checkout_cfg()
    cfg.TRAINER.COOP.W = 8.0
    cfg.LOSS = CfgNode()
    cfg.LOSS.T = 2.0
    clipwb.plugin.extend_cfg(cfg)
    assert cfg.TRAINER.COOP.W == 8.0 and cfg.TRAINER.COOP.N_CTX == 7
    assert dict(cfg.LOSS) == {"T": 2.0, "NAME": "prograd", "LAMBDA": 1.0}
    # MMRL's own node too (DePT's pairings add their base methods' nodes)
    assert {"COOP", "MMRL"} <= clipwb.plugin.baseline_nodes()


# ---- CLIP from a CoOp-family checkout ----------------------------------
class ListOnlyBlock(torch.nn.Module):
    """Stand-in for a fork's prompted block class: forward takes a list."""

    def forward(self, inputs):
        raise AssertionError("the encoders must not call a block's forward")


def _fork_shaped(model):
    """``model`` with every block's forward replaced by a list-only one."""
    forked = copy.deepcopy(model)
    for block in list(forked.transformer.resblocks) + list(forked.visual.transformer.resblocks):
        block.forward = ListOnlyBlock().forward
    return forked


def test_encoders_drive_fork_shaped_blocks_through_their_submodules():
    from clipwb.trainers.kit.prompted_encoders import PromptedImageEncoder, PromptedTextEncoder
    from clip import clip as clip_api

    stock = build_tiny_clip()
    forked = _fork_shaped(stock)
    images = torch.randn(3, 3, 32, 32)
    tokens = clip_api.tokenize(["a photo of a cat.", "a dog"])
    deep = [torch.randn(2, 64) for _ in range(1)]
    with torch.no_grad():
        for model in (stock, forked):
            model.eval()
        want_img = stock.encode_image(images)
        want_txt = stock.encode_text(tokens)
        img = PromptedImageEncoder(forked)(images)
        txt = PromptedTextEncoder(forked).encode_text(tokens)
        torch.testing.assert_close(img, want_img, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(txt, want_txt, rtol=1e-5, atol=1e-5)
        # deep vision prompts: the same on stock blocks and on fork-shaped ones
        shallow = torch.randn(2, 64)
        a = PromptedImageEncoder(stock)(images, shallow_prompts=shallow, deep_prompts=deep)
        b = PromptedImageEncoder(forked)(images, shallow_prompts=shallow, deep_prompts=deep)
        torch.testing.assert_close(a, b)


def test_loader_builds_clip_with_a_forks_build_model(tmp_path, tiny_clip_path):
    """Inside a MaPLe / PromptSRC checkout ``import clip`` is the fork, whose
    build_model needs design_details: the loader passes the no-prompt design
    and the features equal stock CLIP's."""
    host = write_host(str(tmp_path), "promptsrc")
    with torch.no_grad():
        stock = build_tiny_clip()
        torch.manual_seed(0)
        images = torch.randn(2, 3, 32, 32)
        want = stock.encode_image(images)
    torch.save(images, str(tmp_path / "images.pt"))
    code = """
import sys, torch
import clip, clip.model
assert clip.__file__.startswith({host!r}), clip.__file__
try:
    clip.model.build_model(torch.load({ckpt!r}))
except TypeError as err:
    print("fork needs design_details:", "design_details" in str(err))
from clipwb.trainers.kit.clip_loader import load_clip
model = load_clip({ckpt!r})
with torch.no_grad():
    out = model.encode_image(torch.load({images!r}))
torch.save(out, {out!r})
print("blocks", type(model.transformer.resblocks[0]).__name__)
""".format(host=host, ckpt=tiny_clip_path, images=str(tmp_path / "images.pt"),
           out=str(tmp_path / "out.pt"))
    proc = run_python(code, cwd=host)
    assert proc.returncode == 0, proc.stderr
    assert "fork needs design_details: True" in proc.stdout
    assert "blocks ResidualAttentionBlock" in proc.stdout
    torch.testing.assert_close(torch.load(str(tmp_path / "out.pt")), want, rtol=1e-5, atol=1e-5)


def test_top_level_folders_refuse_their_bare_names():
    for name in ("trainers", "datasets"):
        proc = run_python("import {}".format(name))
        assert proc.returncode != 0
        assert "is the package clipwb.{}".format(name) in proc.stderr


def test_package_imports_from_any_directory(tmp_path):
    proc = run_python("import clipwb.plugin, clipwb.dropin, clipwb.toyworld as t, os; "
                      "print(os.path.isfile(t.TOY_CLIP_PATH))", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("True")
    assert os.path.isdir(os.path.join(REPO, "configs", "trainers", "DiSa"))


def test_every_code_folder_is_a_package():
    """setup.py installs the folders that have an __init__.py: a folder of
    modules without one works in an editable install but is missing from a
    wheel (pip install git+...)."""
    missing = []
    for top in ("clipwb", "trainers", "datasets"):
        for dirpath, dirnames, filenames in os.walk(os.path.join(REPO, top)):
            dirnames[:] = [d for d in dirnames if not d.startswith((".", "__"))]
            if any(f.endswith(".py") for f in filenames) and "__init__.py" not in filenames:
                missing.append(os.path.relpath(dirpath, REPO))
    assert not missing, "add an __init__.py to: {}".format(", ".join(missing))


def test_every_registered_trainer_adds_its_config_keys():
    """The registration tables and clipwb.trainers.TRAINER_MODULES (whose
    extend_cfg functions add the keys) name the same modules."""
    import clipwb.trainers

    tables = dict(registration.BASELINE_TRAINERS, **registration.PLUGIN_TRAINERS)
    assert set(tables.values()) == set(clipwb.trainers.TRAINER_MODULES)
