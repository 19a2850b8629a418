"""The CoOp-family run scripts: syntax, run dirs, train.py flags, skipping, resuming.

train.py is replaced by a stub (``TRAINPY``) that records its arguments and
writes what a real run leaves behind (a Dassl log with the evaluator block and,
for training runs, the final checkpoint). The real end-to-end runs are the
integration tests' job.
"""
import glob
import json
import os
import re
import socket
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(glob.glob(os.path.join(REPO, "scripts", "**", "*.sh"), recursive=True))
METHODS = ["coop", "kgcoop", "cocoop", "ivlp", "maple", "promptsrc", "prograd", "zsclip", "mmrl",
           "mma"]
JOBS = ["base2new_train.sh", "base2new_test.sh", "base2new.sh", "reproduce_base2new.sh",
        "xd_train.sh", "xd_test.sh", "reproduce_xd.sh"]

STUB_TRAIN = textwrap.dedent('''\
    """Stand-in for train.py: record argv, write a Dassl-like run dir."""
    import json, os, sys, time
    import yaml

    argv = sys.argv[1:]
    with open(os.environ["STUB_CALLS"], "a") as f:
        f.write(json.dumps(argv) + "\\n")
    if os.environ.get("STUB_LOCK"):  # what the run's lock file holds while it runs
        with open(os.environ["STUB_LOCK"]) as f, \\
                open(os.path.join(os.path.dirname(os.environ["STUB_CALLS"]), "lock_seen"), "w") as g:
            g.write(f.read())
    if os.environ.get("STUB_FAIL"):
        sys.exit(3)
    flags = {}
    i = 0
    while i < len(argv) and argv[i].startswith("--"):
        if argv[i] in ("--eval-only", "--no-train"):
            flags[argv[i]] = True
            i += 1
        else:
            flags[argv[i]] = argv[i + 1]
            i += 2
    opts = dict(zip(argv[i::2], argv[i + 1::2]))
    out = flags["--output-dir"]
    os.makedirs(out, exist_ok=True)
    log = os.path.join(out, "log.txt")
    if os.path.exists(log):
        log += time.strftime("-%Y-%m-%d-%H-%M-%S")
    seed = int(flags["--seed"])
    split = opts.get("DATASET.SUBSAMPLE_CLASSES", "all")
    acc = {"base": 80.0, "new": 70.0}.get(split, 60.0) + seed + float(os.environ.get("STUB_SHIFT", 0))
    lines = ["epoch [1/1] batch [1/1] loss 1.0000"]
    if "--eval-only" not in flags:
        with open(flags["--config-file"]) as f:
            epoch = (yaml.safe_load(f).get("OPTIM") or {}).get("MAX_EPOCH", 10)
        epoch = int(opts.get("OPTIM.MAX_EPOCH", epoch))
        os.makedirs(os.path.join(out, "prompt_learner"), exist_ok=True)
        open(os.path.join(out, "prompt_learner", "model.pth.tar-%d" % epoch), "w").close()
    lines += ["=> result", "* total: 100", "* correct: %d" % acc, "* accuracy: %.1f%%" % acc,
              "* error: %.1f%%" % (100 - acc), "* macro_f1: %.1f%%" % acc]
    with open(log, "w") as f:
        f.write("\\n".join(lines) + "\\n")
''')


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: os.path.relpath(p, REPO))
def test_script_syntax(script):
    proc = subprocess.run(["bash", "-n", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_every_method_has_every_job():
    for method in METHODS:
        for job in JOBS:
            assert os.path.isfile(os.path.join(REPO, "scripts", method, job)), (method, job)
    for method in ("coop", "promptsrc"):
        assert os.path.isfile(os.path.join(REPO, "scripts", method, "few_shot.sh"))


def test_default_configs_exist():
    """Each script's default CFG names a shipped config file."""
    for script in SCRIPTS:
        if os.path.basename(script) == "common.sh":
            continue  # shared logic: its CFG=toy is checked by the toy-world tests
        with open(script) as f:
            text = f.read()
        cfg_dir = re.search(r"CFG_DIR=\$\{CFG_DIR:-(\w+)\}", text)
        trainer = re.search(r"TRAINER=\$\{TRAINER:-(\w+)\}", text)
        # scripts/guidg/dg_common.sh: the experts' configs (EXPERT_TRAINER's folder)
        trainer = trainer or re.search(r"EXPERT_TRAINER=(\w+)", text)
        for cfg in re.findall(r"CFG=(?:\$\{CFG:-)?([\w+.]+)\}?", text):
            if cfg.startswith("$"):
                continue
            folder = cfg_dir.group(1) if cfg_dir else trainer.group(1)
            path = os.path.join(REPO, "configs", "trainers", folder, cfg + ".yaml")
            assert os.path.isfile(path), "{}: {}".format(script, path)


#: environment variables the scripts read, cleared for the stub runs
SCRIPT_VARIABLES = ("TRAINER", "CFG", "CFG_DIR", "SHOTS", "OPTS", "BACKBONE", "LOADEP",
                    "ZERO_SHOT", "DATASETS", "SEEDS", "XD_DATASETS", "OUTPUT", "DATA",
                    "EXPERT_CFG", "EXPERT_OPTS", "PRESET", "DOMAINS", "SOURCES",
                    "EXPERT_PER_TARGET")


def stub_environment(tmp_path, datasets):
    """Environment for the scripts: stub train.py, tmp configs of ``datasets``, output."""
    stub = tmp_path / "stub_train.py"
    stub.write_text(STUB_TRAIN)
    ds_dir = tmp_path / "dataset_configs"
    ds_dir.mkdir()
    for name in datasets:
        (ds_dir / (name + ".yaml")).write_text('DATASET:\n  NAME: "{}"\n'.format(name))
    environ = {k: v for k, v in os.environ.items() if k not in SCRIPT_VARIABLES}
    environ.update(
        PYTHON=sys.executable, TRAINPY=str(stub), STUB_CALLS=str(tmp_path / "calls.jsonl"),
        DATASET_CFG_DIR=str(ds_dir), DATA=str(tmp_path / "data"),
        OUTPUT=str(tmp_path / "output"))
    return environ


@pytest.fixture
def env(tmp_path):
    return stub_environment(tmp_path, ("caltech101", "dtd", "imagenet", "oxford_pets"))


def run_script(env, script, *args, **extra_env):
    e = dict(env)
    e.update({k: str(v) for k, v in extra_env.items()})
    return subprocess.run(["bash", os.path.join(REPO, "scripts", script)] + [str(a) for a in args],
                          capture_output=True, text=True, env=e, cwd=REPO, timeout=120)


def calls(env):
    path = env["STUB_CALLS"]
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


def flag(argv, name):
    return argv[argv.index(name) + 1] if name in argv else None


def opts_of(argv):
    """The trailing KEY VALUE pairs, as a list of pairs (order kept)."""
    i = 0
    while i < len(argv) and argv[i].startswith("--"):
        i += 1 if argv[i] in ("--eval-only", "--no-train") else 2
    rest = argv[i:]
    return list(zip(rest[0::2], rest[1::2]))


PSRC_CFG = "vit_b16_c2_ep20_batch4_4+4ctx"


def test_base2new_runs_train_then_test_then_prints_the_table(env):
    out = env["OUTPUT"]
    proc = run_script(env, "promptsrc/base2new.sh", "caltech101", 1,
                      BACKBONE="tiny_clip.pt", OPTS='INPUT.SIZE "(32, 32)" DATALOADER.NUM_WORKERS 0')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    train, test = calls(env)
    common = "caltech101/shots_16/PromptSRC/{}/seed1".format(PSRC_CFG)
    train_dir = os.path.join(out, "base2new", "train_base", common)
    test_dir = os.path.join(out, "base2new", "test_new", common)
    assert train[:12] == [
        "--root", env["DATA"], "--seed", "1", "--trainer", "PromptSRC",
        "--dataset-config-file", os.path.join(env["DATASET_CFG_DIR"], "caltech101.yaml"),
        "--config-file", "configs/trainers/PromptSRC/{}.yaml".format(PSRC_CFG),
        "--output-dir", train_dir]
    assert "--eval-only" not in train and "--model-dir" not in train
    assert opts_of(train) == [("DATASET.NUM_SHOTS", "16"), ("DATASET.SUBSAMPLE_CLASSES", "base"),
                              ("MODEL.BACKBONE.NAME", "tiny_clip.pt"), ("INPUT.SIZE", "(32, 32)"),
                              ("DATALOADER.NUM_WORKERS", "0")]
    assert flag(test, "--output-dir") == test_dir
    assert flag(test, "--model-dir") == train_dir
    assert flag(test, "--load-epoch") == "20"  # OPTIM.MAX_EPOCH of the config
    assert "--eval-only" in test
    assert ("DATASET.SUBSAMPLE_CLASSES", "new") in opts_of(test)
    # the table: Base 81 (seed 1), Novel 71, HM = 2*81*71/152
    assert "Base-to-novel: PromptSRC / {} / 16 shots".format(PSRC_CFG) in proc.stdout
    row = [ln for ln in proc.stdout.splitlines() if ln.startswith("caltech101")][0]
    assert row.split()[1:8] == ["81.00", "±", "0.00", "71.00", "±", "0.00",
                                "{:.2f}".format(2 * 81 * 71 / 152.0)]

    # run again: both results exist, nothing is run
    proc = run_script(env, "promptsrc/base2new.sh", "caltech101", 1,
                      BACKBONE="tiny_clip.pt", OPTS='INPUT.SIZE "(32, 32)" DATALOADER.NUM_WORKERS 0')
    assert proc.returncode == 0, proc.stderr
    assert len(calls(env)) == 2
    assert "The results exist at {}, skipping".format(train_dir) in proc.stdout
    assert "The results exist at {}, skipping".format(test_dir) in proc.stdout
    assert "Oops" not in proc.stdout


def test_unfinished_train_run_is_run_again_in_its_dir(env):
    train_dir = os.path.join(env["OUTPUT"], "base2new", "train_base", "dtd", "shots_16", "MaPLe",
                             "vit_b16_c2_ep5_batch4_2ctx", "seed2")
    os.makedirs(os.path.join(train_dir, "prompt_learner"))
    with open(os.path.join(train_dir, "log.txt"), "w") as f:
        f.write("epoch [1/5] batch [1/1] loss 1.0\n")
    open(os.path.join(train_dir, "prompt_learner", "model.pth.tar-1"), "w").close()
    proc = run_script(env, "maple/base2new_train.sh", "dtd", 2)
    assert proc.returncode == 0, proc.stderr
    (argv,) = calls(env)
    assert flag(argv, "--output-dir") == train_dir
    assert os.path.isfile(os.path.join(train_dir, "prompt_learner", "model.pth.tar-5"))
    assert os.path.isfile(os.path.join(train_dir, "log.txt"))
    assert len(glob.glob(os.path.join(train_dir, "log.txt-*"))) == 1  # the stub's new log
    # a folder from before the options were recorded is resumed, and now records them
    with open(os.path.join(train_dir, "run_options.txt")) as f:
        assert f.read().splitlines()[1] == (
            "--config-file configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml "
            "DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base ")


def test_test_without_a_trained_model_says_what_to_run(env):
    proc = run_script(env, "cocoop/base2new_test.sh", "dtd", 1)
    assert proc.returncode != 0
    assert calls(env) == []
    assert "model.pth.tar-10" in proc.stderr
    assert "bash scripts/cocoop/base2new_train.sh dtd 1" in proc.stderr


def test_max_epoch_override_sets_the_load_epoch_and_cfg_may_be_a_yaml_path(env, tmp_path):
    tiny = tmp_path / "tiny_ivlp.yaml"
    tiny.write_text("OPTIM:\n  MAX_EPOCH: 3\nTRAINER:\n  IVLP:\n    N_CTX_TEXT: 2\n")
    proc = run_script(env, "ivlp/base2new.sh", "dtd", 3, "OPTIM.MAX_EPOCH", 1, CFG=tiny)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    train, test = calls(env)
    assert flag(train, "--config-file") == str(tiny)
    # extra arguments make a variant: its own folder, named from them
    assert flag(train, "--output-dir").endswith(
        os.path.join("train_base", "dtd", "shots_16", "IVLP", "tiny_ivlp", "MAX_EPOCH_1", "seed3"))
    assert flag(test, "--model-dir") == flag(train, "--output-dir")
    assert opts_of(train)[-1] == ("OPTIM.MAX_EPOCH", "1")  # extra arguments come last
    assert flag(test, "--load-epoch") == "1"
    # without the override: the YAML's MAX_EPOCH; SHOTS from the environment
    proc = run_script(env, "ivlp/base2new.sh", "caltech101", 1, CFG=tiny, SHOTS=4)
    assert proc.returncode == 0, proc.stderr
    train, test = calls(env)[2:]
    assert "/shots_4/" in flag(train, "--output-dir")
    assert ("DATASET.NUM_SHOTS", "4") in opts_of(train)
    assert flag(test, "--load-epoch") == "3"


def test_cross_dataset_dirs_and_flags(env):
    out = env["OUTPUT"]
    cfg = "vit_b16_c2_ep5_batch4_2ctx_cross_datasets"
    proc = run_script(env, "maple/xd_train.sh", 1)
    assert proc.returncode == 0, proc.stderr
    proc = run_script(env, "maple/xd_test.sh", "oxford_pets", 1)
    assert proc.returncode == 0, proc.stderr
    train, test = calls(env)
    source = os.path.join(out, "imagenet", "MaPLe", cfg + "_16shots", "seed1")
    assert flag(train, "--output-dir") == source
    assert flag(train, "--dataset-config-file").endswith("imagenet.yaml")
    assert opts_of(train) == [("DATASET.NUM_SHOTS", "16")]  # all classes
    assert flag(test, "--output-dir") == os.path.join(out, "evaluation", "MaPLe", cfg + "_16shots",
                                                      "oxford_pets", "seed1")
    assert flag(test, "--model-dir") == source
    assert flag(test, "--load-epoch") == "2"
    assert "--eval-only" in test and opts_of(test) == []
    # the results tool reads this layout back
    proc = subprocess.run([sys.executable, "scripts/results.py", out], cwd=REPO,
                          capture_output=True, text=True)
    assert "imagenet (source)" in proc.stdout and "oxford_pets" in proc.stdout


def test_zero_shot_clip_only_evaluates(env):
    proc = run_script(env, "zsclip/base2new.sh", "dtd", 1)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    base, new = calls(env)
    for argv in (base, new):
        assert flag(argv, "--trainer") == "ZeroshotCLIP"
        assert flag(argv, "--config-file") == "configs/trainers/CoOp/vit_b16.yaml"
        assert "--eval-only" in argv and "--model-dir" not in argv
    assert "/base2new/train_base/dtd/shots_16/ZeroshotCLIP/vit_b16/seed1" in flag(base, "--output-dir")
    assert ("DATASET.SUBSAMPLE_CLASSES", "new") in opts_of(new)
    assert "Base-to-novel: ZeroshotCLIP" in proc.stdout


def test_coop_few_shot_layout_and_schedule(env):
    proc = run_script(env, "coop/few_shot.sh", "caltech101", 1, 2)
    assert proc.returncode == 0, proc.stderr
    proc = run_script(env, "coop/few_shot.sh", "caltech101", 8, 2, NCTX=4)
    assert proc.returncode == 0, proc.stderr
    one, eight = calls(env)
    assert flag(one, "--output-dir") == os.path.join(
        env["OUTPUT"], "caltech101", "CoOp", "vit_b16_ep50_1shots", "nctx16_cscFalse_ctpend", "seed2")
    assert flag(one, "--config-file") == "configs/trainers/CoOp/vit_b16_ep50.yaml"
    assert opts_of(one) == [("DATASET.NUM_SHOTS", "1"), ("TRAINER.COOP.N_CTX", "16"),
                            ("TRAINER.COOP.CSC", "False"),
                            ("TRAINER.COOP.CLASS_TOKEN_POSITION", "end")]
    assert flag(eight, "--config-file") == "configs/trainers/CoOp/vit_b16.yaml"
    assert "nctx4_cscFalse_ctpend" in flag(eight, "--output-dir")
    assert "Few-shot accuracy" in proc.stdout


@pytest.mark.parametrize("method,trainer,node", [("promptsrc", "PromptSRC", "PROMPTSRC"),
                                                  ("disa", "DiSa", "DISA")])
def test_few_shot_gpa_for_fine_grained_datasets(env, method, trainer, node):
    proc = run_script(env, method + "/few_shot.sh", "dtd", 4, 1)
    assert proc.returncode == 0, proc.stderr
    proc = run_script(env, method + "/few_shot.sh", "caltech101", 4, 1)
    assert proc.returncode == 0, proc.stderr
    dtd, cal = calls(env)
    assert ("TRAINER.{}.GPA_MEAN".format(node), "45") in opts_of(dtd)
    assert ("TRAINER.{}.GPA_STD".format(node), "5") in opts_of(dtd)
    assert not any(k.startswith("TRAINER." + node) for k, _ in opts_of(cal))
    assert flag(cal, "--output-dir").endswith(
        os.path.join("caltech101", trainer, "vit_b16_c2_ep50_batch4_4+4ctx_few_shot_4shots", "seed1"))
    # an explicit CFG keeps its own GPA values
    proc = run_script(env, method + "/few_shot.sh", "dtd", 4, 2,
                      CFG="vit_b16_c2_ep50_batch4_4+4ctx_few_shot")
    assert proc.returncode == 0, proc.stderr
    assert not any(k.startswith("TRAINER." + node) for k, _ in opts_of(calls(env)[-1]))


def test_reproduce_base2new_loops_and_reports(env):
    proc = run_script(env, "cocoop/reproduce_base2new.sh", DATASETS="caltech101 dtd", SEEDS="1 2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    argvs = calls(env)
    assert len(argvs) == 8
    runs = [(flag(a, "--dataset-config-file").rsplit("/", 1)[-1], flag(a, "--seed"),
             "--eval-only" in a) for a in argvs]
    assert runs[:4] == [("caltech101.yaml", "1", False), ("caltech101.yaml", "1", True),
                        ("caltech101.yaml", "2", False), ("caltech101.yaml", "2", True)]
    # Base 81/82 -> 81.5 ± 0.5, Novel 71/72 -> 71.5 ± 0.5 for both datasets
    assert "81.50 ± 0.50" in proc.stdout and "71.50 ± 0.50" in proc.stdout
    assert "Average (2 datasets)" in proc.stdout


def test_reproduce_goes_on_after_a_failure_and_reports_it(env):
    proc = run_script(env, "ivlp/reproduce_base2new.sh", DATASETS="dtd", SEEDS="1", STUB_FAIL=1)
    assert proc.returncode != 0
    assert len(calls(env)) == 1  # the test is not run after a failed training
    assert "1 job(s) failed" in proc.stderr and "b2n_train dtd 1" in proc.stderr


def test_bad_arguments_give_one_clear_error(env):
    proc = run_script(env, "coop/base2new_train.sh", "caltech101")
    assert proc.returncode != 0
    assert "usage: bash scripts/coop/base2new_train.sh DATASET SEED" in proc.stderr
    proc = run_script(env, "coop/base2new_train.sh", "caltech_101", 1)
    assert proc.returncode != 0
    assert "caltech_101.yaml not found" in proc.stderr and "caltech101" in proc.stderr
    proc = run_script(env, "maple/base2new_train.sh", "dtd", 1, CFG="vit_b16_nope")
    assert proc.returncode != 0
    assert "configs/trainers/MaPLe/vit_b16_nope.yaml not found" in proc.stderr
    assert "vit_b16_c2_ep5_batch4_2ctx" in proc.stderr
    assert calls(env) == []


def test_guidg_reuses_a_finished_expert_and_resumes_a_half_trained_one(tmp_path):
    """An expert counts as done by run_finished (common.sh's rule for every
    train run: the final checkpoint and the log's accuracy line), not by the
    model-best.pth.tar its first validation writes: one killed in epoch 3
    (model-best and run_state.pth there, no result) is started again in its
    folder, a finished one is reused."""
    env = stub_environment(tmp_path, ("pacs",))
    env.update(DOMAINS="art_painting cartoon photo", SHOTS="2")
    experts = os.path.join(env["OUTPUT"], "dg", "pacs", "shots_2", "GuiDGExpert",
                           "vit_b16_c16_ep31")
    killed = os.path.join(experts, "expert_art_painting", "seed1")
    os.makedirs(os.path.join(killed, "prompt_learner"))
    for name in ("prompt_learner/model-best.pth.tar", "prompt_learner/checkpoint",
                 "run_state.pth"):
        open(os.path.join(killed, name), "w").close()
    with open(os.path.join(killed, "log.txt"), "w") as f:
        f.write("epoch [3/31] batch [1/1] loss 1.0000\n")
    finished = os.path.join(experts, "expert_cartoon", "seed1")
    os.makedirs(os.path.join(finished, "prompt_learner"))
    open(os.path.join(finished, "prompt_learner", "model.pth.tar-31"), "w").close()
    with open(os.path.join(finished, "log.txt"), "w") as f:
        f.write("=> result\n* total: 10\n* correct: 6\n* accuracy: 60.0%\n")
    proc = run_script(env, "guidg/dg.sh", "pacs", "photo", 1)
    assert "Reusing the expert of cartoon at {}".format(finished) in proc.stdout
    assert "Reusing the expert of art_painting" not in proc.stdout
    assert "the expert of art_painting in {} is unfinished: resuming it".format(
        killed) in proc.stdout
    runs = calls(env)
    assert [flag(argv, "--trainer") for argv in runs] == ["GuiDGExpert", "GuiDG"], proc.stderr
    assert flag(runs[0], "--output-dir") == killed
    assert os.path.isfile(os.path.join(killed, "prompt_learner", "model.pth.tar-31"))


DISA_CFG = "vit_b16_c2_ep20_batch4_4+4ctx"


def b2n_run_dir(env, phase, trainer, cfg, *levels, dataset="caltech101", seed=1):
    return os.path.join(env["OUTPUT"], "base2new", phase, dataset, "shots_16", trainer, cfg,
                        *levels, "seed{}".format(seed))


def table_rows(text):
    """``{label: [cells]}`` of the rows of results.py's printed tables."""
    rows = {}
    for line in text.splitlines():
        cells = [c for c in re.split(r"\s{2,}", line.strip()) if c]
        if len(cells) > 2:
            rows.setdefault(cells[0], cells[1:])
    return rows


def test_a_variant_runs_in_its_own_folder_and_is_its_own_row(env):
    out = env["OUTPUT"]
    proc = run_script(env, "disa/base2new.sh", "caltech101", 1)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    default_train = b2n_run_dir(env, "train_base", "DiSa", DISA_CFG)
    before = sorted(os.listdir(default_train))

    # extra arguments after the default run: a variant, in its own folders
    # (it skipped into the default's, which printed the default's numbers)
    proc = run_script(env, "disa/base2new.sh", "caltech101", 1, "TRAINER.DISA.SALIENCY", "text",
                      STUB_SHIFT=5)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    argvs = calls(env)
    assert len(argvs) == 4, proc.stdout
    train, test = (b2n_run_dir(env, phase, "DiSa", DISA_CFG, "SALIENCY_text")
                   for phase in ("train_base", "test_new"))
    assert flag(argvs[2], "--output-dir") == train
    assert opts_of(argvs[2])[-1] == ("TRAINER.DISA.SALIENCY", "text")
    assert flag(argvs[3], "--output-dir") == test and flag(argvs[3], "--model-dir") == train
    assert sorted(os.listdir(default_train)) == before
    # its table: its own numbers (the stub's 81 + 5, 71 + 5), labelled by the variant
    assert "Base-to-novel: DiSa / {}/SALIENCY_text / 16 shots".format(DISA_CFG) in proc.stdout
    assert table_rows(proc.stdout)["caltech101"][:2] == ["86.00 ± 0.00", "76.00 ± 0.00"]
    # run again: its own results exist
    proc = run_script(env, "disa/base2new.sh", "caltech101", 1, "TRAINER.DISA.SALIENCY", "text")
    assert proc.returncode == 0 and len(calls(env)) == 4
    assert "The results exist at {}, skipping".format(train) in proc.stdout
    # the plan (the grid's) names the same folder
    proc = run_script(env, "disa/base2new_train.sh", "caltech101", 1, "TRAINER.DISA.SALIENCY",
                      "text", CLIPWB_PLAN=1)
    assert proc.returncode == 0 and "plan: done {}".format(train) in proc.stdout.splitlines()

    # results.py: the default and the variant are two rows, each with its numbers
    proc = subprocess.run([sys.executable, "scripts/results.py", os.path.join(out, "base2new")],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rows = table_rows(proc.stdout)
    assert rows["DiSa / {} / 16 shots".format(DISA_CFG)][:2] == ["81.00 ± 0.00", "71.00 ± 0.00"]
    assert rows["DiSa / {}/SALIENCY_text / 16 shots".format(DISA_CFG)][:2] == [
        "86.00 ± 0.00", "76.00 ± 0.00"]


def test_variant_names_and_tag(env):
    proc = run_script(env, "ivlp/xd_train.sh", 2, "INPUT.SIZE", "(32, 32)", "MODEL.BACKBONE.NAME",
                      "/w/ViT-B-32.pt", CLIPWB_PLAN=1)
    assert proc.returncode == 0, proc.stderr
    cfg = "vit_b16_c2_ep20_batch4_4+4ctx_16shots"
    assert proc.stdout.splitlines()[-1] == "plan: run " + os.path.join(
        env["OUTPUT"], "imagenet", "IVLP", cfg, "SIZE_32-32,NAME_w-ViT-B-32.pt", "seed2")
    # TAG names the level, with or without extra arguments
    proc = run_script(env, "coop/few_shot.sh", "dtd", 4, 1, TAG="b32", BACKBONE="ViT-B/32",
                      CLIPWB_PLAN=1)
    assert proc.stdout.splitlines()[0] == "plan: run " + os.path.join(
        env["OUTPUT"], "dtd", "CoOp", "vit_b16_ep100_4shots", "nctx16_cscFalse_ctpend", "b32",
        "seed1")
    proc = run_script(env, "coop/base2new_train.sh", "dtd", 1, TAG="../x")
    assert proc.returncode != 0 and calls(env) == []
    assert proc.stderr == ("error: TAG=../x is not a folder name: use letters, digits and "
                           ". _ , + = - (not seedN)\n")


def test_a_folder_made_with_other_options_is_refused(env):
    train_dir = os.path.join(env["OUTPUT"], "base2new", "train_base", "dtd", "shots_16", "CoOp",
                             "vit_b16_ctxv1", "seed1")
    proc = run_script(env, "coop/base2new_train.sh", "dtd", 1, OPTS="OPTIM.MAX_EPOCH 1")
    assert proc.returncode == 0, proc.stderr
    with open(os.path.join(train_dir, "run_options.txt")) as f:
        made = f.read().splitlines()[1]
    assert made == ("--config-file configs/trainers/CoOp/vit_b16_ctxv1.yaml DATASET.NUM_SHOTS 16 "
                    "DATASET.SUBSAMPLE_CLASSES base OPTIM.MAX_EPOCH 1 ")
    # other OPTS (a finished run would be skipped into, an unfinished one
    # resumed), another backbone, no OPTS: refused in one sentence, run or planned
    for extra in (dict(OPTS="OPTIM.MAX_EPOCH 1 OPTIM.LR 0.1"), dict(OPTS="OPTIM.MAX_EPOCH 2"),
                  dict(OPTS="OPTIM.MAX_EPOCH 1", BACKBONE="RN50"), dict(),
                  dict(OPTS="OPTIM.MAX_EPOCH 2", CLIPWB_PLAN=1)):
        proc = run_script(env, "coop/base2new_train.sh", "dtd", 1, **extra)
        assert proc.returncode != 0, extra
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stderr.startswith("error: {} was made with other options ({}) than this "
                                      "run's (".format(train_dir, made)), proc.stderr
        assert proc.stderr.endswith(": give this run its own folder with TAG=NAME (or other extra "
                                    "arguments), or delete {}/run_options.txt to resume that "
                                    "folder with the new options\n".format(train_dir))
        assert "skipping" not in proc.stdout and "plan:" not in proc.stdout
    assert len(calls(env)) == 1
    # TAG gives it its own folder; the same options again are skipped
    proc = run_script(env, "coop/base2new_train.sh", "dtd", 1, OPTS="OPTIM.MAX_EPOCH 2", TAG="ep2")
    assert proc.returncode == 0, proc.stderr
    assert flag(calls(env)[-1], "--output-dir") == os.path.join(os.path.dirname(train_dir), "ep2",
                                                                "seed1")
    proc = run_script(env, "coop/base2new_train.sh", "dtd", 1, OPTS="OPTIM.MAX_EPOCH 1")
    assert proc.returncode == 0 and len(calls(env)) == 2
    assert "The results exist at {}, skipping".format(train_dir) in proc.stdout


def test_a_folder_a_live_process_writes_is_refused_and_a_stale_lock_taken_over(env, tmp_path):
    train_dir = os.path.join(env["OUTPUT"], "base2new", "train_base", "dtd", "shots_16", "CoOp",
                             "vit_b16_ctxv1", "seed1")
    lock = os.path.join(train_dir, "run.lock")
    os.makedirs(train_dir)
    host = socket.gethostname()  # as bash's HOSTNAME
    writer = subprocess.Popen(["sleep", "300"])  # stands for a run still writing the folder
    try:
        with open(lock, "w") as f:
            f.write("{} {}\n".format(writer.pid, host))
        proc = run_script(env, "coop/base2new_train.sh", "dtd", 1)
        assert proc.returncode != 0 and calls(env) == []
        assert proc.stderr == (
            "error: {} is being written by process {} on {} (its lock file {}): wait for that "
            "run to end or stop it (delete the lock file only if no such process runs)\n".format(
                train_dir, writer.pid, host, lock))
        # the grid's plan: busy (the grid does not start the unit)
        proc = run_script(env, "coop/base2new_train.sh", "dtd", 1, CLIPWB_PLAN=1)
        assert proc.returncode == 0 and proc.stdout == "plan: busy {}\n".format(train_dir)
    finally:
        writer.kill()
        writer.wait()
    # its process has ended: the lock is stale, taken over, and released at the end
    proc = run_script(env, "coop/base2new_train.sh", "dtd", 1, STUB_LOCK=lock)
    assert proc.returncode == 0, proc.stderr
    assert len(calls(env)) == 1 and not os.path.exists(lock)
    with open(os.path.join(tmp_path, "lock_seen")) as f:
        pid, seen_host = f.read().split()
    assert seen_host == host and int(pid) != writer.pid  # held by the script while train.py ran
