"""python -m clipwb.dropin on fixture checkouts: what it writes, what it refuses,
what it never overwrites, and its undo."""
import ast
import os
import re
import subprocess
import sys

import pytest

from clipwb import dropin
from tests.e2e_helpers import snapshot, subprocess_env
from tests.host_checkout import HOST_DATA, write_host


class Done:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def run_dropin(capsys):
    """``python -m clipwb.dropin ARGS`` in this process (its ``main``)."""
    def run(*args):
        code = dropin.main([str(a) for a in args])
        out = capsys.readouterr()
        return Done(code, out.out, out.err)
    return run


def test_the_command_runs_from_any_directory(tmp_path):
    host = write_host(str(tmp_path), "coop")
    proc = subprocess.run([sys.executable, "-m", "clipwb.dropin", host, "--dry-run"],
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=120,
                          env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    assert "scripts/disa/base2new_train.sh: written" in proc.stdout
    assert "dry run: nothing written" in proc.stdout
    assert not os.path.exists(os.path.join(host, "scripts", "disa"))


@pytest.fixture
def host(tmp_path):
    return write_host(str(tmp_path), "promptsrc")


def test_dropin_patches_train_py_copies_configs_and_writes_host_scripts(host, run_dropin):
    before = snapshot(host)
    proc = run_dropin(host)
    assert proc.returncode == 0, proc.stderr
    with open(os.path.join(host, "train.py")) as f:
        text = f.read()
    lines = text.splitlines()
    imp = lines.index(dropin.IMPORT_LINE)
    assert lines[imp - 1] == "import trainers.promptsrc"  # after the host's own imports
    call = lines.index("    extend_cfg(cfg)")
    assert lines[call + 1] == "    " + dropin.EXTEND_LINE
    with open(os.path.join(host, "train.py" + dropin.BACKUP_SUFFIX)) as f:
        assert f.read().encode() == before["train.py"]
    for rel in ("configs/trainers/DiSa/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
                "configs/trainers/ISP/toy.yaml", "configs/trainers/GuiDGExpert/toy.yaml",
                "configs/datasets/toy.yaml", "configs/datasets/pacs.yaml",
                "configs/datasets/image_folder.yaml",
                "scripts/disa/base2new_train.sh", "scripts/isp/base2new_test.sh",
                "scripts/guidg/dg.sh"):
        assert os.path.isfile(os.path.join(host, rel)), rel
    with open(os.path.join(host, "scripts/disa/base2new_test.sh")) as f:
        script = f.read()
    # the host's own form: its DATA, TRAINER, CFG, LOADEP = the config's MAX_EPOCH
    assert 'DATA=${{DATA:-"{}"}}'.format(HOST_DATA) in script
    assert "TRAINER=DiSa" in script and "CFG=vit_b16_c2_ep20_batch4_4+4ctx" in script
    assert "LOADEP=20\n" in script
    with open(os.path.join(host, "scripts/guidg/dg.sh")) as f:
        assert "official) CFG=${CFG}_official; EXPERT_CFG=${EXPERT_CFG}_official ;;" in f.read()
    with open(os.path.join(host, "scripts/isp/base2new_test.sh")) as f:
        assert "LOADEP=5\n" in f.read()
    assert os.access(os.path.join(host, "scripts/disa/base2new_train.sh"), os.X_OK)
    # every host file is untouched, train.py aside
    after = snapshot(host)
    for rel, data in before.items():
        if rel != "train.py":
            assert after[rel] == data, rel


def test_dropin_twice_changes_nothing_and_never_overwrites(host, run_dropin):
    mine = os.path.join(host, "configs", "trainers", "DiSa", "toy.yaml")
    os.makedirs(os.path.dirname(mine))
    with open(mine, "w") as f:
        f.write("# the researcher's own file\n")
    assert run_dropin(host).returncode == 0
    first = snapshot(host)
    proc = run_dropin(host)
    assert proc.returncode == 0, proc.stderr
    assert snapshot(host) == first
    assert "train.py: already has the plugin lines" in proc.stdout
    assert "configs/trainers/DiSa/toy.yaml: kept the checkout's file (not overwritten)" in proc.stdout
    with open(mine) as f:
        assert f.read() == "# the researcher's own file\n"


def test_undo_restores_the_checkout_and_keeps_edited_files(host, run_dropin):
    before = snapshot(host)
    assert run_dropin(host).returncode == 0
    edited = os.path.join(host, "scripts", "isp", "base2new_train.sh")
    with open(edited, "a") as f:
        f.write("# my change\n")
    proc = run_dropin(host, "--undo")
    assert proc.returncode == 0, proc.stderr
    assert "scripts/isp/base2new_train.sh: edited since the drop-in, kept" in proc.stdout
    after = snapshot(host)
    assert set(after) == set(before) | {"scripts/isp/base2new_train.sh"}
    for rel, data in before.items():
        assert after[rel] == data, rel


def test_maple_checkouts_get_maple_style_script_names(tmp_path, run_dropin):
    host = write_host(str(tmp_path), "maple")
    assert run_dropin(host, "--data", "/my/data").returncode == 0
    for rel in ("scripts/disa/base2new_train_disa.sh", "scripts/disa/base2new_test_disa.sh",
                "scripts/isp/base2new_train_isp.sh", "scripts/guidg/dg_guidg.sh"):
        assert os.path.isfile(os.path.join(host, rel)), rel
    with open(os.path.join(host, "scripts/disa/base2new_train_disa.sh")) as f:
        assert 'DATA=${DATA:-"/my/data"}' in f.read()


def test_a_train_py_not_shaped_like_coops_is_refused(tmp_path, run_dropin):
    host = write_host(str(tmp_path), "coop")
    path = os.path.join(host, "train.py")
    with open(path) as f:
        text = f.read().replace("    extend_cfg(cfg)\n", "    add_my_keys(cfg)\n")
    with open(path, "w") as f:
        f.write(text)
    before = snapshot(host)
    proc = run_dropin(host)
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: {} is not a CoOp-style train.py".format(path))
    assert "no 'extend_cfg(cfg)' call inside setup_cfg" in proc.stderr
    assert "Nothing was changed" in proc.stderr
    assert snapshot(host) == before
    with open(path, "w") as f:
        f.write(text.replace("def setup_cfg(args):", "def setup_cfg(args)"))
    broken = run_dropin(host)
    assert broken.returncode == 2
    assert broken.stderr == "Error: {} does not parse as Python (line {}: expected ':'); " \
        "nothing was changed. Fix it and run the drop-in again.\n".format(
            path, text.splitlines().index("def setup_cfg(args):") + 1)
    missing = run_dropin(tmp_path / "nowhere")
    assert missing.returncode == 2 and "no such folder" in missing.stderr


@pytest.mark.parametrize("style", ["parenthesised", "backslash"])
def test_import_line_goes_after_a_multi_line_trainer_import(tmp_path, run_dropin, style):
    host = write_host(str(tmp_path), "coop", imports=style)
    proc = run_dropin(host)
    assert proc.returncode == 0, proc.stderr
    with open(os.path.join(host, "train.py")) as f:
        text = f.read()
    ast.parse(text)
    lines = text.splitlines()
    imp = lines.index(dropin.IMPORT_LINE)
    # right after the statement's last line
    assert lines[imp - 1] == {"parenthesised": ")", "backslash": "    trainers.zsclip"}[style]


def test_a_crlf_train_py_keeps_its_line_endings_and_undo_restores_its_bytes(tmp_path, run_dropin):
    host = write_host(str(tmp_path), "coop", newline="\r\n")
    path = os.path.join(host, "train.py")
    with open(path, "rb") as f:
        original = f.read()
    assert run_dropin(host).returncode == 0
    with open(path, "rb") as f:
        patched = f.read()
    added = [dropin.IMPORT_LINE.encode() + b"\r\n", b"    " + dropin.EXTEND_LINE.encode() + b"\r\n"]
    assert all(patched.count(line) == 1 for line in added)
    assert patched.replace(added[0], b"").replace(added[1], b"") == original
    assert patched.count(b"\n") == patched.count(b"\r\n")
    with open(path + dropin.BACKUP_SUFFIX, "rb") as f:
        assert f.read() == original
    proc = run_dropin(host, "--undo")
    assert proc.returncode == 0, proc.stderr
    with open(path, "rb") as f:
        assert f.read() == original
    assert not os.path.exists(path + dropin.BACKUP_SUFFIX)


def test_an_interrupted_dropin_is_undone_whole(host):
    """Killed mid-way (a closed pipe: ``| head -1``): --undo still removes
    every file it wrote, as the record grows with each file."""
    before = snapshot(host)
    said = []

    def say(line):
        said.append(line)
        if len(said) == 12:
            raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(BrokenPipeError):
        dropin.dropin(host, say=say)
    assert os.path.isfile(os.path.join(host, "configs", "trainers", "DiSa", "toy.yaml"))
    dropin.undo(host, say=lambda line: None)
    assert snapshot(host) == before


def test_a_second_dropin_in_coop_finds_its_files_as_written(tmp_path, run_dropin):
    host = write_host(str(tmp_path), "coop")
    assert run_dropin(host).returncode == 0
    first = snapshot(host)
    os.remove(os.path.join(host, "scripts", "disa", "base2new_train.sh"))
    proc = run_dropin(host)
    assert proc.returncode == 0, proc.stderr
    assert "kept the checkout's file" not in proc.stdout
    assert "scripts/isp/base2new_test.sh: already there" in proc.stdout
    assert "(DATA={})".format(HOST_DATA) in proc.stdout
    # the re-written script is the first one again: DATA=${DATA:-"..."}, not nested
    assert snapshot(host) == first
    with open(os.path.join(host, "scripts", "disa", "base2new_train.sh")) as f:
        assert f.read().count("${DATA:-") == 1


def test_every_file_touched_is_reported_the_record_included(host, run_dropin):
    proc = run_dropin(host)
    assert "{}: written".format(dropin.RECORD) in proc.stdout
    undo = run_dropin(host, "--undo")
    assert "{}: removed".format(dropin.RECORD) in undo.stdout
    assert "train.py{}: removed".format(dropin.BACKUP_SUFFIX) in undo.stdout


def test_undo_after_train_py_was_edited_says_what_it_did_with_the_copy(host, run_dropin):
    path = os.path.join(host, "train.py")
    with open(path) as f:
        original = f.read()
    assert run_dropin(host).returncode == 0
    with open(path, "a") as f:
        f.write("# my change\n")
    proc = run_dropin(host, "--undo")
    assert proc.returncode == 0, proc.stderr
    with open(path) as f:
        assert f.read() == original + "# my change\n"
    with open(path + dropin.BACKUP_SUFFIX) as f:
        assert f.read() == original
    line = next(line for line in proc.stdout.splitlines()
                if line.startswith("train.py" + dropin.BACKUP_SUFFIX))
    assert "kept" in line and "edited since the drop-in" in line


def test_a_train_py_that_would_not_parse_is_restored_and_refused(host, run_dropin, monkeypatch):
    before = snapshot(host)
    real = dropin.patched_train_py
    monkeypatch.setattr(dropin, "patched_train_py", lambda text: real(text) + "def broken(:\n")
    proc = run_dropin(host)
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: {}: with the plugin lines it does not parse".format(
        os.path.join(host, "train.py")))
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "done" not in proc.stdout.lower()
    assert snapshot(host) == before


def test_a_closed_stdout_does_not_stop_the_dropin_half_way(tmp_path):
    """``python -m clipwb.dropin CHECKOUT | head -1``: the drop-in still
    writes everything (and says nothing more), exit status 0."""
    host = write_host(str(tmp_path), "coop")
    proc = subprocess.Popen([sys.executable, "-m", "clipwb.dropin", host], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=subprocess_env())
    assert proc.stdout.readline().startswith(b"train.py: added")
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    assert proc.stderr.read() == b""
    record = dropin._read_record(host)
    assert "scripts/guidg/dg.sh" in record["files"] and len(record["files"]) > 30
    assert os.path.isfile(os.path.join(host, "scripts", "guidg", "dg.sh"))


def test_the_readme_names_the_scripts_as_written(tmp_path):
    """The README's drop-in section names only scripts the drop-in writes
    (into a CoOp or a MaPLe checkout), and every MaPLe-style name it writes."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "README.md")) as f:
        section = f.read().split("## Use inside your CoOp")[1].split("\n## ")[0]
    coop = {rel for rel in dropin.host_files(write_host(str(tmp_path), "coop"), "x")
            if rel.endswith(".sh")}
    maple = {rel for rel in dropin.host_files(write_host(str(tmp_path), "maple"), "x")
             if rel.endswith(".sh")}
    named = set(re.findall(r"scripts/\w+/\w+\.sh", section))
    assert named and named <= coop | maple, named - coop - maple
    suffixed = set(re.findall(r"\w+_(?:disa|isp|guidg)\.sh", section))
    assert suffixed == {os.path.basename(rel) for rel in maple
                        if rel.split("/")[1] in ("disa", "isp", "guidg")}


def test_the_host_dg_script_resumes_a_half_trained_expert_and_reuses_a_finished_one(tmp_path):
    """The written scripts/guidg/dg.sh (a stub train.py in the checkout): an
    expert killed in epoch 3 (model-best.pth.tar and run_state.pth there, no
    test result) is trained again in its folder; a finished one is reused."""
    from tests.test_scripts import STUB_TRAIN

    host = tmp_path / "host"
    (host / "scripts" / "guidg").mkdir(parents=True)
    script = host / "scripts" / "guidg" / "dg.sh"
    script.write_text(dropin.dg_script(HOST_DATA, "scripts/guidg/dg.sh DATASET TARGET SEED"))
    (host / "train.py").write_text(STUB_TRAIN)
    for folder, name in (("GuiDGExpert", "vit_b16_c16_ep31"), ("GuiDG", "vit_b16_clipood")):
        (host / "configs" / "trainers" / folder).mkdir(parents=True)
        (host / "configs" / "trainers" / folder / (name + ".yaml")).write_text(
            "OPTIM:\n  MAX_EPOCH: 3\n")
    experts = host / "output" / "dg" / "pacs" / "shots_16" / "GuiDGExpert" / "vit_b16_c16_ep31"
    killed = experts / "expert_art_painting" / "seed1"
    (killed / "prompt_learner").mkdir(parents=True)
    for name in ("prompt_learner/model-best.pth.tar", "prompt_learner/checkpoint",
                 "run_state.pth"):
        (killed / name).write_text("")
    (killed / "log.txt").write_text("epoch [3/3] batch [1/1] loss 1.0000\n")
    finished = experts / "expert_cartoon" / "seed1"
    (finished / "prompt_learner").mkdir(parents=True)
    (finished / "prompt_learner" / "model.pth.tar-3").write_text("")
    (finished / "log.txt").write_text("=> result\n* accuracy: 60.0%\n")
    calls = tmp_path / "calls.jsonl"
    env = subprocess_env(STUB_CALLS=str(calls),
                         PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    proc = subprocess.run(["bash", str(script), "pacs", "photo", "1"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Reusing the expert of cartoon" in proc.stdout
    assert "Step 1: the expert of art_painting" in proc.stdout
    trainers = [re.search(r'"--trainer", "(\w+)"', line).group(1)
                for line in calls.read_text().splitlines()]
    assert trainers == ["GuiDGExpert", "GuiDGExpert", "GuiDG"]  # art_painting, sketch, step 2
    assert (killed / "prompt_learner" / "model.pth.tar-3").is_file()
