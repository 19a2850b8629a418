"""End to end in fixture checkouts of CoOp, MaPLe and PromptSRC (tests/host_checkout.py):
the drop-in command, then DiSa, ISP, GuiDG and the baselines KgCoOp, TCP, ProGrad, MMA,
MMRL and DePT (CoOp's and MaPLe's pairings) through the checkout's own ``train.py``, scripts and
readers (a baseline's logs and last checkpoint equal to this repository's run); the
checkout's own CoOp gives the same numbers before and after; the baselines' keys join
the checkout's ``TRAINER.COOP``, a checkout's own KgCoOp stays its own."""
import glob
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

import clipwb.dropin
from clipwb.toyworld.writer import ensure_toy_dataset

from tests.dataset_layouts import write_dataset
from tests.e2e_helpers import (REPO, describe, evaluator_block, params, progress, read_log,
                               run_all, selected, subprocess_env, train_args)
from tests.host_checkout import write_dassl_standin, write_host

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def world(tmp_path_factory, toy_data, tiny_clip_path):
    """The Dassl stand-in, one DATA folder (the toy world + a tiny Caltech101)
    and the tiny CLIP."""
    base = tmp_path_factory.mktemp("hosts")
    site = write_dassl_standin(str(base / "site"))
    if not os.path.isdir(os.path.join(toy_data, "caltech-101")):
        write_dataset(toy_data, "Caltech101", n_classes=4, n_per_class=8)
    ensure_toy_dataset(toy_data)  # before the parallel jobs read it
    return dict(site=site, data=toy_data, clip=tiny_clip_path)


def run(host, world, args, timeout=600):
    env = subprocess_env(PYTHONPATH=world["site"], DATA=world["data"])
    env.pop("DASSL_BACKEND", None)  # the checkout's Dassl, as a user runs it
    proc = subprocess.run([str(a) for a in args], cwd=host, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, describe(proc)
    return proc


def host_coop(host, world, out):
    """The checkout's own CoOp on its own Caltech101 reader: (losses, evaluator block)."""
    run(host, world, [sys.executable, "train.py", "--root", world["data"], "--seed", 1,
                      "--trainer", "CoOp", "--dataset-config-file",
                      "configs/datasets/caltech101.yaml",
                      "--config-file", "configs/trainers/CoOp/tiny.yaml", "--output-dir", out,
                      "MODEL.BACKBONE.NAME", world["clip"], "DATASET.NUM_SHOTS", 4,
                      "DATASET.SUBSAMPLE_CLASSES", "base"])
    text = read_log(os.path.join(out, "log.txt"))
    return [row[2] for row in progress(text)], evaluator_block(text)


def dropin(host):
    """The drop-in (in this process; tests/test_dropin.py runs the command)."""
    said = clipwb.dropin.dropin(host, say=lambda line: None)
    assert any(line.startswith("train.py: added") for line in said)


def script(host, folder, job):
    plain = os.path.join("scripts", folder, job + ".sh")
    return plain if os.path.isfile(os.path.join(host, plain)) else os.path.join(
        "scripts", folder, "{}_{}.sh".format(job, folder))


def base2new_with_scripts(host, world, folder, trainer):
    """``scripts/<folder>/base2new_{train,test}`` on the toy world; check both logs
    and the last checkpoint (the toy config's ``OPTIM.MAX_EPOCH``). Returns the
    runs' path under ``train_base/`` and ``test_new/`` (``shots_<SHOTS>``: the
    script's recipe, ProGrad's 4, the others' 16)."""
    tiny = ["DATASET.NUM_SHOTS", "2"]
    train = run(host, world, ["bash", script(host, folder, "base2new_train"), "toy", "1"] + tiny)
    assert "kept the ones already registered: ImageNet, Caltech101" in train.stdout
    run(host, world, ["bash", script(host, folder, "base2new_test"), "toy", "1"] + tiny)
    found = glob.glob(os.path.join(host, "output", "base2new", "train_base", "toy", "shots_*",
                                   trainer, "toy", "seed1"))
    assert len(found) == 1, found
    common = os.path.relpath(found[0], os.path.join(host, "output", "base2new", "train_base"))
    for setting, classes in (("train_base", 13), ("test_new", 12)):
        log = read_log(os.path.join(host, "output", "base2new", setting, common, "log.txt"))
        block = evaluator_block(log)
        assert block is not None, log[-2000:]
        assert block[0] == 20 * classes  # the toy world's test images of those classes
    epochs = clipwb.dropin.max_epoch(os.path.join(host, "configs", "trainers", trainer, "toy.yaml"))
    # (the trainer's model folder: prompt_learner/, MMA's adapter_learner/)
    assert glob.glob(os.path.join(host, "output", "base2new", "train_base", common, "*",
                                  "model.pth.tar-{}".format(epochs)))
    return common


def guidg_with_scripts(host, world):
    """``scripts/guidg/dg`` on the toy world: experts, then step 2; a second call
    reuses everything."""
    args = ["bash", script(host, "guidg", "dg"), "toy", "sketch", "1", "DATASET.NUM_SHOTS", "2",
            "OPTIM.MAX_EPOCH", "1", "TRAINER.GUIDG.ITERS_PER_EPOCH", "2"]
    proc = run(host, world, args)
    experts = os.path.join(host, "output", "dg", "toy", "shots_16", "GuiDGExpert", "toy")
    for domain in ("plain", "textured", "noisy"):
        assert "Step 1: the expert of " + domain in proc.stdout
        assert os.path.isfile(os.path.join(experts, "expert_" + domain, "seed1",
                                           "prompt_learner", "model-best.pth.tar"))
    log = read_log(os.path.join(host, "output", "dg", "toy", "shots_16", "GuiDG", "toy",
                                "sketch", "seed1", "log.txt"))
    assert evaluator_block(log)[0] == 25 * 8  # sketch's test part: 8 images a class
    again = run(host, world, args)
    assert "Reusing the expert of plain" in again.stdout
    assert "(so skip this job)" in again.stdout


# One method per kind of checkout keeps the suite short (each run starts a
# Python with torch); ISP runs on a checkout's own reader too.
METHOD_OF_KIND = {"coop": "guidg", "maple": "isp", "promptsrc": "disa"}


def dropin_then_method(kind, world, folder):
    host = write_host(folder, kind)
    if kind == "promptsrc":  # the fork-shaped checkout with the most trainers of its own
        before = host_coop(host, world, os.path.join(folder, "coop_before"))
    dropin(host)
    if kind == "promptsrc":
        after = host_coop(host, world, os.path.join(folder, "coop_after"))
        assert before[0] and before == after  # the same per-iteration losses and accuracy
    method = METHOD_OF_KIND[kind]
    if method == "guidg":
        guidg_with_scripts(host, world)
    else:
        base2new_with_scripts(host, world, method, {"isp": "ISP", "disa": "DiSa"}[method])


def isp_on_the_checkouts_reader(world, folder):
    host = write_host(folder, "promptsrc")
    dropin(host)
    out = os.path.join(folder, "ISP")
    args = train_args("ISP", world["data"], out, world["clip"], "OPTIM.MAX_EPOCH", "2",
                      "DATASET.SUBSAMPLE_CLASSES", "base",
                      dataset_config="configs/datasets/caltech101.yaml")
    proc = run(host, world, [sys.executable, "train.py"] + args)
    assert "Reading Caltech101 with the checkout's own reader" in proc.stdout
    log = read_log(os.path.join(out, "log.txt"))
    assert len({epoch for epoch, _, _ in progress(log)}) == 2
    assert evaluator_block(log)[0] == 4  # the 2 base classes' test images
    test_out = os.path.join(folder, "ISP_new")
    args = train_args("ISP", world["data"], test_out, world["clip"],
                      "DATASET.SUBSAMPLE_CLASSES", "new",
                      dataset_config="configs/datasets/caltech101.yaml",
                      flags=["--eval-only", "--model-dir", out, "--load-epoch", "2"])
    run(host, world, [sys.executable, "train.py"] + args)
    assert evaluator_block(read_log(os.path.join(test_out, "log.txt")))[0] == 4


# The baselines the plugin brings to a checkout that lacks them: script folder -> trainer.
BASELINE_OF_FOLDER = {"kgcoop": "KgCoOp", "tcp": "TCP", "prograd": "ProGrad",
                      "mma": "MultiModalAdapter", "mmrl": "MMRL",
                      # DePT's pairings: the plugin's CoOp ... PromptSRC under them
                      "coop_dept": "ExtrasLinearProbeCoOp",
                      "cocoop_dept": "ExtrasLinearProbeCoCoOp",
                      "kgcoop_dept": "ExtrasLinearProbeKgCoOp",
                      "maple_dept": "ExtrasLinearProbeMaPLe",
                      "promptsrc_dept": "ExtrasLinearProbePromptSRC"}
#: the ones the CoOp-checkout test runs (a DePT case: about a minute on 2 busy
#: cores, so CoOp's and MaPLe's pairings only; the other three pass the same way)
IN_A_COOP_CHECKOUT = ("kgcoop", "tcp", "prograd", "mma", "mmrl", "coop_dept", "maple_dept")


def training_lines(text):
    """A log's progress lines without their timings: epoch, batch, every loss
    meter, accuracy and learning rate."""
    return [re.sub(r" time \S+ \(\S+\) data \S+ \(\S+\)| eta \S+$", "", line)
            for line in text.splitlines() if line.startswith("epoch [")]


def here(world, trainer, out, subsample, flags=()):
    """This repository's own ``train.py`` on the toy world, 2 shots of the
    ``subsample`` classes: the log's text."""
    proc = subprocess.run(
        [sys.executable, "train.py", "--root", world["data"], "--seed", "1", "--trainer", trainer,
         "--dataset-config-file", "configs/datasets/toy.yaml",
         "--config-file", "configs/trainers/{}/toy.yaml".format(trainer), "--output-dir", out]
        + list(flags) + ["DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", subsample],
        cwd=REPO, env=subprocess_env(DATA=world["data"]), capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, describe(proc)
    return read_log(os.path.join(out, "log.txt"))


def same_checkpoints(theirs, ours, epoch):
    """Every model folder's ``model.pth.tar-<epoch>`` under ``theirs`` (DePT:
    ``prompt_learner/`` and ``dept_head/``) is in ``ours``, tensor for tensor."""
    import torch

    found = sorted(os.path.relpath(path, theirs) for path in glob.glob(
        os.path.join(theirs, "*", "model.pth.tar-{}".format(epoch))))
    assert found
    for rel in found:
        a = torch.load(os.path.join(theirs, rel), map_location="cpu", weights_only=False)
        b = torch.load(os.path.join(ours, rel), map_location="cpu", weights_only=False)
        assert a["state_dict"].keys() == b["state_dict"].keys(), rel
        for key, value in a["state_dict"].items():
            assert torch.equal(value, b["state_dict"][key]), (rel, key)
    return [os.path.dirname(rel) for rel in found]


def baseline_in_a_checkout(world, folder, baseline, kind="coop"):
    """A baseline from the plugin (a CoOp checkout has none of them) with the
    drop-in's scripts: trains on the base classes, tests on the new ones; the
    training is this repository's own run of the same command, line for line
    (the checkout's TRAINER.COOP defaults change nothing the toy config leaves
    to them), and so is the new classes' test of the last checkpoint (DePT:
    the similarity logits alone there, its head's base rule off). ``kind``: the
    checkout (DePT's MaPLe pairing in a MaPLe checkout: the checkout's own
    TRAINER.MAPLE node)."""
    trainer = BASELINE_OF_FOLDER[baseline]
    host = write_host(folder, kind)
    dropin(host)
    common = base2new_with_scripts(host, world, baseline, trainer)
    logs = os.path.join(host, "output", "base2new", "{}", common, "log.txt")
    theirs = read_log(logs.format("train_base"))
    out = os.path.join(folder, "here")
    ours = here(world, trainer, out, "base")
    toy = os.path.join(host, "configs", "trainers", trainer, "toy.yaml")
    with open(toy) as f:
        batch = yaml.safe_load(f)["DATALOADER"]["TRAIN_X"]["BATCH_SIZE"]
    # every batch's line (fewer batches than PRINT_FREQ): 2 shots of 13 base classes,
    # the last partial batch dropped (Dassl keeps it when it is the only one)
    assert len(training_lines(ours)) == clipwb.dropin.max_epoch(toy) * max(1, 26 // batch)
    assert training_lines(theirs) == training_lines(ours)
    assert evaluator_block(theirs) == evaluator_block(ours)
    ours_new = here(world, trainer, os.path.join(folder, "here_new"), "new",
                    flags=["--eval-only", "--model-dir", out,
                           "--load-epoch", str(clipwb.dropin.max_epoch(toy))])
    assert evaluator_block(read_log(logs.format("test_new"))) == evaluator_block(ours_new)
    folders = same_checkpoints(os.path.dirname(logs.format("train_base")), out,
                               clipwb.dropin.max_epoch(toy))
    if baseline.endswith("_dept"):
        assert folders == ["dept_head", "prompt_learner"]


@pytest.fixture(scope="module")
def host_runs(world, tmp_path_factory, request):
    """The checkout jobs the selected tests need, two at a time (each child
    runs one thread)."""
    kinds = selected(request, "kind")
    jobs = {kind: (lambda kind=kind: dropin_then_method(
        kind, world, str(tmp_path_factory.mktemp(kind)))) for kind in METHOD_OF_KIND
        if kind in kinds}
    if any(item.name == "test_isp_trains_and_tests_on_the_checkouts_own_reader"
           for item in request.session.items):
        jobs["reader"] = lambda: isp_on_the_checkouts_reader(
            world, str(tmp_path_factory.mktemp("r")))
    for baseline in selected(request, "baseline"):
        jobs[baseline] = lambda baseline=baseline: baseline_in_a_checkout(
            world, str(tmp_path_factory.mktemp(baseline)), baseline)
    for pairing in selected(request, "pairing"):
        kind = DEPT_HOME[pairing]
        jobs[kind + ":" + pairing] = lambda pairing=pairing, kind=kind: baseline_in_a_checkout(
            world, str(tmp_path_factory.mktemp(kind)), pairing, kind)
    return run_all(jobs, workers=2)


def outcome(result):
    if isinstance(result, BaseException):
        raise result


# The three checkouts and the checkout's own reader in the slow set (pytest -m
# slow); the default set drops the baselines into a CoOp checkout below.
@pytest.mark.parametrize("kind", params(sorted(METHOD_OF_KIND),
                                        slow=("coop", "maple", "promptsrc")))
def test_dropin_then_a_method_runs_with_the_checkouts_scripts(kind, host_runs):
    outcome(host_runs[kind])


@pytest.mark.slow
def test_isp_trains_and_tests_on_the_checkouts_own_reader(host_runs):
    outcome(host_runs["reader"])


# KgCoOp, TCP, ProGrad, MMA, MMRL and DePT on CoOp and MaPLe in a CoOp checkout: the
# slow set (a minute or more each).
@pytest.mark.parametrize("baseline", params(sorted(IN_A_COOP_CHECKOUT),
                                            slow=IN_A_COOP_CHECKOUT))
def test_a_baseline_trains_and_tests_in_a_coop_checkout(baseline, host_runs):
    outcome(host_runs[baseline])


# DePT's MaPLe pairing in a checkout of its base method: the checkout's own MaPLe
# trainer and TRAINER.MAPLE node, the fork's clip/ (the slow set; PromptSRC's
# pairing in a PromptSRC checkout, "promptsrc_dept": "promptsrc", passes the same way).
DEPT_HOME = {"maple_dept": "maple"}


@pytest.mark.slow
@pytest.mark.parametrize("pairing", sorted(DEPT_HOME))
def test_a_dept_pairing_trains_and_tests_in_its_base_methods_checkout(pairing, host_runs):
    outcome(host_runs[DEPT_HOME[pairing] + ":" + pairing])


# The checkout's setup_cfg after the drop-in (its parser's defaults), then
# its COOP node, LOSS and who registered KgCoOp and TCP.
_HOST_CFG = """
import json, sys, types
import train
from dassl.engine import TRAINER_REGISTRY
args = types.SimpleNamespace(root="", output_dir="", resume="", seed=-1, source_domains=None,
                             target_domains=None, dataset_config_file="", trainer="KgCoOp",
                             config_file=sys.argv[1], opts=[])
cfg = train.setup_cfg(args)
print(json.dumps({"coop": dict(cfg.TRAINER.COOP), "loss": dict(cfg.LOSS),
                  "kgcoop": TRAINER_REGISTRY.get("KgCoOp").__module__,
                  "tcp": TRAINER_REGISTRY.get("TCP").__module__}))
"""


def host_cfg(host, site, config_file=""):
    """(the plugin's printed line, the JSON of :data:`_HOST_CFG`)."""
    env = subprocess_env(PYTHONPATH=site)
    env.pop("DASSL_BACKEND", None)
    proc = subprocess.run([sys.executable, "-c", _HOST_CFG, config_file], cwd=host, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    return (next(line for line in lines if line.startswith("clipwb plugin")),
            json.loads(lines[-1]))


_HOST_COOP_NODE = {"N_CTX": 16, "CSC": False, "CTX_INIT": "", "PREC": "fp16",
                   "CLASS_TOKEN_POSITION": "end"}  # tests/host_checkout.py's train.py


def test_the_baselines_join_a_coop_checkout_through_the_dropin(tmp_path):
    """A CoOp checkout gets KgCoOp, TCP and ProGrad (registered, configs,
    scripts); its TRAINER.COOP keeps its values and gets W; LOSS is added."""
    site = write_dassl_standin(str(tmp_path / "site"))
    host = write_host(str(tmp_path), "coop")
    said = clipwb.dropin.dropin(host, say=lambda line: None)
    for rel in ("configs/trainers/KgCoOp/toy.yaml", "configs/trainers/TCP/toy.yaml",
                "configs/trainers/ProGrad/toy.yaml", "scripts/kgcoop/base2new_train.sh",
                "scripts/tcp/base2new_test.sh", "scripts/prograd/base2new_train.sh"):
        assert rel + ": written" in said
    with open(os.path.join(host, "scripts", "kgcoop", "base2new_test.sh")) as f:
        text = f.read()
    assert "TRAINER=KgCoOp\n" in text and "CFG=vit_b16_ep100_ctxv1\n" in text
    assert "LOADEP=100\n" in text and "LOADEP=20; fi" in text  # the configs' MAX_EPOCH
    line, cfg = host_cfg(host, site)
    assert "UEOWiSEFT, KgCoOp, TCP, ProGrad, " in line
    # KgCoOp's W and DePT's KgCoOp ALPHA (its configs carry it, unused)
    assert cfg["coop"] == dict(_HOST_COOP_NODE, W=1.0, ALPHA=1.0)
    assert cfg["loss"] == {"NAME": "prograd", "T": 1.0, "LAMBDA": 1.0}
    assert cfg["kgcoop"] == "clipwb.trainers.kgcoop" and cfg["tcp"] == "clipwb.trainers.tcp"
    _, cfg = host_cfg(host, site, "configs/trainers/KgCoOp/toy.yaml")  # the copied file merges
    assert cfg["coop"] == dict(_HOST_COOP_NODE, N_CTX=4, CTX_INIT="a photo of a", PREC="fp32",
                               W=8.0, ALPHA=1.0)


_HOST_KGCOOP = """from dassl.engine import TRAINER_REGISTRY

from .coop import CoOp


@TRAINER_REGISTRY.register()
class KgCoOp(CoOp):
    pass  # a KgCoOp checkout's own trainer
"""


def test_a_checkouts_own_kgcoop_is_left_to_it(tmp_path):
    """A checkout with its own KgCoOp (and its W): no KgCoOp configs or scripts
    are written, the registry keeps its class, its W stays; TCP and ProGrad
    come from the plugin."""
    site = write_dassl_standin(str(tmp_path / "site"))
    host = write_host(str(tmp_path), "coop")
    with open(os.path.join(host, "trainers", "kgcoop.py"), "w") as f:
        f.write(_HOST_KGCOOP)
    with open(os.path.join(host, "train.py")) as f:
        text = f.read()
    text = text.replace("import trainers.zsclip\n", "import trainers.zsclip\nimport trainers.kgcoop\n")
    text = text.replace("    cfg.DATASET.SUBSAMPLE_CLASSES", "    cfg.TRAINER.COOP.W = 8.0\n"
                        "    cfg.DATASET.SUBSAMPLE_CLASSES")
    with open(os.path.join(host, "train.py"), "w") as f:
        f.write(text)
    said = clipwb.dropin.dropin(host, say=lambda line: None)
    assert not [line for line in said if line.startswith(("configs/trainers/KgCoOp/",
                                                           "scripts/kgcoop/"))]
    assert "configs/trainers/TCP/toy.yaml: written" in said
    assert "scripts/tcp/base2new_train.sh: written" in said
    line, cfg = host_cfg(host, site)
    assert "UEOWiSEFT, TCP, ProGrad, " in line
    assert "kept the ones already registered: KgCoOp, " in line
    assert cfg["kgcoop"] == "trainers.kgcoop" and cfg["tcp"] == "clipwb.trainers.tcp"
    # the host's W stays; ALPHA, which the host lacks, is added for DePT's
    # KgCoOp pairing (ExtrasLinearProbeKgCoOp reads TRAINER.COOP.ALPHA)
    assert cfg["coop"] == dict(_HOST_COOP_NODE, W=8.0, ALPHA=1.0)


def _host_after_dropin(folder):
    host = write_host(folder, "coop")
    dropin(host)
    return host


def test_a_bad_setting_inside_a_checkout_is_one_sentence(tmp_path):
    """DASSL_BACKEND=builtin in a checkout on (a stand-in of) real Dassl:
    ``import clipwb.plugin`` refuses it as one line, exit status 2."""
    site = write_dassl_standin(str(tmp_path / "site"), builtin_view=False)
    host = _host_after_dropin(str(tmp_path))
    env = subprocess_env(PYTHONPATH=site, DASSL_BACKEND="builtin")
    proc = subprocess.run([sys.executable, "train.py", "--trainer", "CoOp"], cwd=host, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, describe(proc)
    assert proc.stderr.splitlines() == [
        "Error: DASSL_BACKEND=builtin, but this process builds its trainers with real Dassl "
        "({}): its build_trainer cannot see the plugin's trainers. Unset DASSL_BACKEND (or set "
        "it to auto or dassl) inside a Dassl checkout.".format(
            os.path.join(site, "dassl", "engine", "__init__.py"))], describe(proc)


def test_an_unwritable_data_inside_a_checkout_is_one_sentence(tmp_path):
    """The written script on the toy world with a DATA that cannot be
    written: one line naming the folder (also in the run's log.txt), exit 2."""
    site = write_dassl_standin(str(tmp_path / "site"))
    host = _host_after_dropin(str(tmp_path))
    (tmp_path / "a_file").write_text("")
    data = str(tmp_path / "a_file" / "data")
    proc = subprocess.run(["bash", "scripts/disa/base2new_train.sh", "toy", "1"], cwd=host,
                          env=subprocess_env(PYTHONPATH=site, DATA=data), capture_output=True,
                          text=True, timeout=300)
    line = ("Error: Cannot write the toy dataset into the DATA folder {} (Not a directory). Set "
            "DATA (the scripts) or --root (train.py) to a folder you can write to.".format(data))
    assert proc.returncode == 2, describe(proc)
    assert proc.stderr.splitlines() == [line], describe(proc)
    log = read_log(os.path.join(host, "output", "base2new", "train_base", "toy", "shots_16",
                                "DiSa", "toy", "seed1", "log.txt"))
    assert log.rstrip("\n").endswith(line)
