"""Put the plugin into a CoOp / MaPLe / PromptSRC checkout (and take it out).

    python -m clipwb.dropin CHECKOUT [--data PATH] [--dry-run]
    python -m clipwb.dropin CHECKOUT --undo

What it does in CHECKOUT, printing one line per action:

1. ``train.py``: adds ``import clipwb.plugin`` after the checkout's own
   ``trainers`` / ``datasets`` import statements (after a statement's last
   line, parenthesised or continued) and ``clipwb.plugin.extend_cfg(cfg)``
   after its ``extend_cfg(cfg)`` call (each line marked ``# clipwb plugin``,
   with the file's own line ending; every other byte stays as it was; a copy
   of the original is kept as ``train.py.clipwb-orig``). A ``train.py`` that
   does not parse, or without CoOp's ``setup_cfg`` / ``extend_cfg(cfg)``
   shape, is refused with the file named, and nothing is written; one that
   would not parse with the lines is restored and refused the same way.
2. ``configs/trainers/<Method>/`` of DiSa, ISP, GuiDG and GuiDGExpert, of
   the baselines KgCoOp, TCP, ProGrad, MMA (MultiModalAdapter), MMRL and DePT's
   five ``ExtrasLinearProbe<Base>`` pairings that the
   checkout's ``trainers/`` does not register (:func:`host_trainers`), and
   the dataset configs the checkout lacks (``toy``, ``toy_dg``, ``image_folder``, the DG datasets).
3. ``scripts/disa/``, ``scripts/isp/``, ``scripts/guidg/``: scripts in the
   checkout's own form (hard-coded ``DATA``, ``TRAINER``, ``CFG``, ``SHOTS``,
   ``LOADEP`` = the config's ``OPTIM.MAX_EPOCH``), named as its scripts are
   (MaPLe's ``*_maple.sh`` style gives ``base2new_train_disa.sh``). ``DATA``
   is the value the checkout's scripts already use (the most common one),
   or ``--data``; the environment variable ``DATA`` overrides it at run time.
   Scripts an earlier drop-in wrote do not count. Those baselines get
   ``scripts/<name>/`` base2new train / test scripts in the same form, with
   their official recipe's per-dataset config, shots and options
   (:mod:`clipwb.script_recipes`: the same ``train.py`` calls as this
   repository's ``scripts/<name>/``).

An existing file is never overwritten (one line says it was kept). Running it
again changes nothing. Each file is entered in ``CHECKOUT/.clipwb-dropin.json``
just before it is written, so a drop-in cut short (a closed pipe, Ctrl-C) is
undone whole too. ``--undo`` removes the marked lines and every file it
wrote that is still as written (a file edited since is kept, with a line
saying so), the copy ``train.py.clipwb-orig`` when ``train.py`` is again
that original (else it is kept, with a line saying so), and the record.
"""
import argparse
import ast
import collections
import hashlib
import json
import os
import re
import stat
import sys

from clipwb.errors import UserInputError
from clipwb.script_recipes import max_epoch_opt, recipe

MARK = "# clipwb plugin"
RECORD = ".clipwb-dropin.json"
BACKUP_SUFFIX = ".clipwb-orig"
TMP_SUFFIX = ".clipwb-tmp"
IMPORT_LINE = "import clipwb.plugin  {} (python -m clipwb.dropin . --undo removes it)".format(MARK)
EXTEND_LINE = "clipwb.plugin.extend_cfg(cfg)  " + MARK

#: trainer config folders copied into the checkout
CONFIG_FOLDERS = ("DiSa", "ISP", "GuiDG", "GuiDGExpert")
#: baselines the plugin registers where the checkout lacks them:
#: script folder -> (trainer, base2new cfg)
BASELINE_METHODS = collections.OrderedDict([
    ("kgcoop", ("KgCoOp", "vit_b16_ep100_ctxv1")),
    ("tcp", ("TCP", "vit_b16_ep100_ctxv1")),
    ("prograd", ("ProGrad", "rn50_ep100")),
    ("mma", ("MultiModalAdapter", "vit_b16_ep5")),
    ("mmrl", ("MMRL", "vit_b16")),
    ("coop_dept", ("ExtrasLinearProbeCoOp", "vit_b16_ep10_bs4_lr35")),
    ("cocoop_dept", ("ExtrasLinearProbeCoCoOp", "vit_b16_c4_ep10_batch1_ctxv1")),
    ("kgcoop_dept", ("ExtrasLinearProbeKgCoOp", "vit_b16_ep10_ctxv1_bs4_lr35")),
    ("maple_dept", ("ExtrasLinearProbeMaPLe", "vit_b16_c2_ep10_batch4_2ctx")),
    ("promptsrc_dept", ("ExtrasLinearProbePromptSRC", "vit_b16_c2_ep20_batch4_4+4ctx")),
])
#: dataset configs the plugin's runs need (copied where the checkout lacks them)
DATASET_CONFIGS = ("toy", "toy_dg", "image_folder", "pacs", "vlcs", "office_home",
                   "terra_incognita", "domainnet", "imagenet_dg")

#: base-to-novel / cross-dataset methods: script folder -> (trainer, base2new cfg, xd cfg)
B2N_METHODS = collections.OrderedDict([
    ("disa", ("DiSa", "vit_b16_c2_ep20_batch4_4+4ctx",
              "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets")),
    ("isp", ("ISP", "vit_b16_c2_ep5_batch4_2+2ctx",
             "vit_b16_c2_ep5_batch4_2+2ctx_cross_datasets")),
])

#: GuiDG's DG datasets and their domains (scripts/guidg/dg.sh)
DG_DOMAINS = collections.OrderedDict([
    ("pacs", "art_painting cartoon photo sketch"),
    ("vlcs", "Caltech101 LabelMe SUN09 VOC2007"),
    ("office_home", "Art Clipart Product Real_World"),
    ("terra_incognita", "location_100 location_38 location_43 location_46"),
    ("domainnet", "clipart infograph painting quickdraw real sketch"),
    ("toy", "plain textured sketch noisy"),
])

DEFAULT_DATA = "/path/to/datasets"
#: the second line of the scripts' header: the drop-in wrote that script
SCRIPT_SIGNATURE = "# Written by python -m clipwb.dropin"


# ---------------------------------------------------------------- sources
def configs_root():
    """This project's ``configs/`` folder (in the package when installed from a
    wheel, beside it in a source checkout or an editable install)."""
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.path.join(here, "configs"),
                      os.path.join(os.path.dirname(here), "configs")):
        if os.path.isdir(os.path.join(candidate, "trainers", "DiSa")):
            return candidate
    raise UserInputError("clipwb's configs/ folder is missing beside {} (a broken install): "
                         "reinstall with pip install -e . or pip install git+<repo url>.".format(here))


def max_epoch(config_file):
    """``OPTIM.MAX_EPOCH`` of a YAML config (Dassl's default 10 if unset)."""
    import yaml

    with open(config_file) as f:
        node = (yaml.safe_load(f) or {}).get("OPTIM") or {}
    return int(node.get("MAX_EPOCH", 10))


# ---------------------------------------------------------------- the host
def read_host(checkout):
    """Check that ``checkout`` is CoOp-shaped; return (train.py path, text)."""
    checkout = os.path.abspath(checkout)
    if not os.path.isdir(checkout):
        raise UserInputError("{}: no such folder. Give the root of a CoOp / MaPLe / PromptSRC "
                             "checkout.".format(checkout))
    train_py = os.path.join(checkout, "train.py")
    if not os.path.isfile(train_py):
        raise UserInputError("{}: no train.py there, so this is not a CoOp-family checkout "
                             "(CoOp, MaPLe, PromptSRC).".format(train_py))
    text = _read_text(train_py)
    error = _syntax_error(text)
    if error:
        raise UserInputError("{} does not parse as Python ({}); nothing was changed. Fix it "
                             "and run the drop-in again.".format(train_py, error))
    problems = []
    if not re.search(r"^def setup_cfg\(", text, re.M):
        problems.append("no 'def setup_cfg(args)'")
    if not re.search(r"^def extend_cfg\(cfg\)", text, re.M):
        problems.append("no 'def extend_cfg(cfg)'")
    if MARK not in text and _extend_call(_tree(text), _lines(text)) is None:
        problems.append("no 'extend_cfg(cfg)' call inside setup_cfg")
    if problems:
        raise UserInputError(
            "{} is not a CoOp-style train.py ({}). Nothing was changed. Add the plugin by hand: "
            "'import clipwb.plugin' after its trainer imports and 'clipwb.plugin.extend_cfg(cfg)' "
            "right after its own config keys are added.".format(train_py, "; ".join(problems)))
    return train_py, text


def _read_text(path):
    """A file's text with its bytes kept (line endings, any encoding):
    :func:`_encode` gives the same bytes back."""
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "surrogateescape")


def _encode(text):
    return text.encode("utf-8", "surrogateescape")


def _tree(text):
    return ast.parse(_encode(text))


def _syntax_error(text):
    """``"line N: message"`` where ``text`` does not parse as Python, else None."""
    try:
        _tree(text)
    except (SyntaxError, ValueError) as err:
        return "line {}: {}".format(getattr(err, "lineno", "?"), getattr(err, "msg", err))
    return None


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def _lines(text):
    """``text`` as lines with their endings (``"".join`` gives it back); the
    breaks are Python's (\\n, \\r\\n, \\r), so line N is the parser's line N."""
    return _LINE.findall(text)


def _extend_call(tree, lines):
    """(last line, indent) of the ``extend_cfg(cfg)`` statement inside
    ``setup_cfg`` (a statement of its own line), or None. Lines count from 1."""
    for node in tree.body:
        if not (isinstance(node, ast.FunctionDef) and node.name == "setup_cfg"):
            continue
        calls = [stmt for stmt in ast.walk(node) if isinstance(stmt, ast.Expr)
                 and isinstance(stmt.value, ast.Call)
                 and isinstance(stmt.value.func, ast.Name) and stmt.value.func.id == "extend_cfg"
                 and [getattr(a, "id", None) for a in stmt.value.args] == ["cfg"]
                 and not stmt.value.keywords]
        for stmt in sorted(calls, key=lambda stmt: stmt.lineno):
            indent = re.match(r"[ \t]*", lines[stmt.lineno - 1]).group(0)
            if stmt.col_offset == len(indent):
                return stmt.end_lineno, indent
    return None


def _is_host_import(node):
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        names = [node.module or ""] if node.level == 0 else []
    return any(re.match(r"(trainers|datasets)(\.|$)", name) for name in names)


def _import_anchor(tree):
    """The line after which ``import clipwb.plugin`` goes (from 1; 0: the
    top): the last line of the checkout's last top-level import of its
    trainers / datasets, else of its last top-level import, else of its
    docstring. Statements after it on its line (``;``) count with it."""
    last_host = last_any = None
    body = tree.body
    for i, node in enumerate(body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            break
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            last_any = i
            if _is_host_import(node):
                last_host = i
    if last_host is None and last_any is None:
        docstring = body and isinstance(body[0], ast.Expr) and \
            isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)
        return body[0].end_lineno if docstring else 0
    i = last_host if last_host is not None else last_any
    end = body[i].end_lineno
    while i + 1 < len(body) and body[i + 1].lineno == end:
        i += 1
        end = body[i].end_lineno
    return end


def _insert(lines, after, line, newline):
    """Put ``line`` after the first ``after`` lines, ending as the file's lines do."""
    if after and not lines[after - 1].endswith(("\n", "\r")):  # the last line, unended
        lines[after - 1] += newline
        lines.insert(after, line)
    else:
        lines.insert(after, line + newline)


def patched_train_py(text):
    """``text`` with the two plugin lines (unchanged if they are there), in
    its own line endings; every other line stays byte for byte."""
    if MARK in text:
        return text
    tree, lines = _tree(text), _lines(text)
    newline = re.search(r"\r\n|\r|\n", text)
    newline = newline.group(0) if newline else "\n"
    call, indent = _extend_call(tree, lines)
    anchor = _import_anchor(tree)  # above the call: inserting the call's line first keeps it
    _insert(lines, call, indent + EXTEND_LINE, newline)
    _insert(lines, anchor, IMPORT_LINE, newline)
    return "".join(lines)


def _is_plugin_line(line):
    line = line.rstrip("\r\n")
    return line.rstrip().endswith(MARK) or MARK + " (" in line


def unpatched_train_py(text):
    """``text`` without the lines the drop-in added (the bytes it had before)."""
    lines = _lines(text)
    kept = [line for line in lines if not _is_plugin_line(line)]
    if lines and kept and _is_plugin_line(lines[-1]) and not lines[-1].endswith(("\n", "\r")):
        kept[-1] = kept[-1].rstrip("\r\n")  # the added line was the last, unended one
    return "".join(kept)


def _plain_data(value):
    """A ``DATA`` value without quotes and ``${DATA:-...}`` wrappers."""
    value = value.strip().strip("\"'")
    match = re.fullmatch(r"\$\{DATA:?-(.*)\}", value)
    return _plain_data(match.group(1)) if match else value


def host_data_default(checkout, ours=()):
    """The ``DATA=...`` value most used by the checkout's own scripts: not the
    ones a drop-in wrote (``ours``, paths relative to ``checkout``, or with
    :data:`SCRIPT_SIGNATURE`)."""
    counts = collections.Counter()
    for dirpath, _, filenames in os.walk(os.path.join(checkout, "scripts")):
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if not name.endswith(".sh") or \
                    os.path.relpath(path, checkout).replace(os.sep, "/") in ours:
                continue
            with open(path, errors="replace") as f:
                text = f.read()
            if SCRIPT_SIGNATURE in text:
                continue
            for line in text.splitlines():
                match = re.match(r"DATA=(\S.*?)\s*$", line)
                if match and "clipwb" not in line:
                    counts[_plain_data(match.group(1))] += 1
    return counts.most_common(1)[0][0] if counts else DEFAULT_DATA


def host_trainers(checkout):
    """The trainer names the checkout's ``trainers/`` registers (classes
    under ``@TRAINER_REGISTRY.register()``): the ones the plugin leaves to it."""
    names = set()
    pattern = re.compile(r"^@TRAINER_REGISTRY\.register\(\)\s*^class\s+(\w+)", re.M)
    for dirpath, _, filenames in os.walk(os.path.join(checkout, "trainers")):
        for name in filenames:
            if name.endswith(".py"):
                with open(os.path.join(dirpath, name), errors="replace") as f:
                    names.update(pattern.findall(f.read()))
    return names


def host_script_suffix(checkout):
    """Whether the checkout names its scripts after their method, as MaPLe does
    (``scripts/maple/base2new_train_maple.sh``): then ours are
    ``base2new_train_disa.sh``. Counted over its script folders: more folders
    of that form than of CoOp's plain ``base2new_train.sh``."""
    scripts = os.path.join(checkout, "scripts")
    suffixed = plain = 0
    if os.path.isdir(scripts):
        for folder in sorted(os.listdir(scripts)):
            path = os.path.join(scripts, folder)
            if not os.path.isdir(path) or folder in B2N_METHODS or folder == "guidg" \
                    or folder in BASELINE_METHODS:
                continue
            names = os.listdir(path)
            if "base2new_train.sh" in names:
                plain += 1
            elif any(re.fullmatch(r"base2new_train_\w+\.sh", n) for n in names):
                suffixed += 1
    return suffixed > plain


# ---------------------------------------------------------------- scripts
_HEADER = """#!/bin/bash
# {what}
# Usage: bash {usage} [KEY VALUE ...]  (extra pairs go to train.py)
""" + SCRIPT_SIGNATURE + """ (configs: configs/trainers/{cfg_dir}/);
# DATASET toy runs the offline toy world (toy.yaml configs).
cd "$(dirname "$0")/../.." || exit 1

# custom config
DATA=${{DATA:-"{data}"}}
TRAINER={trainer}
"""


def _run(lines, indent="    "):
    return " \\\n".join(indent + line for line in lines) + "\n"


def _train(trainer="${TRAINER}", dataset_cfg="${DATASET}", cfg_dir="${TRAINER}", cfg="${CFG}",
           out="${DIR}"):
    """The first lines of a ``python train.py`` call (CoOp's flag order)."""
    return ["CLIPWB_SCRIPT=1 python train.py", "--root \"${DATA}\"", "--seed ${SEED}", "--trainer " + trainer,
            "--dataset-config-file configs/datasets/{}.yaml".format(dataset_cfg),
            "--config-file configs/trainers/{}/{}.yaml".format(cfg_dir, cfg),
            "--output-dir \"{}\"".format(out)]


# A train script's note before the run (CoOp's wording): an existing run dir
# resumes (the run state or the checkpoints in it).
_RESUME_NOTE = """if [ -d "$DIR" ]; then
    echo "Results are available in ${DIR}. Resuming..."
else
    echo "Run this job and save the output to ${DIR}"
fi
"""


def _recipe_lines(recipe, epoch_of=None):
    """The script lines of a :class:`~clipwb.script_recipes.Recipe` after
    ``CFG`` / ``SHOTS`` are set: ``RECIPE_OPTS`` and a ``case`` on the
    dataset (``epoch_of(cfg, opts)``: that dataset's ``LOADEP``, test
    scripts only). Empty for a method that runs every dataset alike."""
    if recipe is None or not (recipe.opts or recipe.cases()):
        return ""
    lines = ["RECIPE_OPTS=({})  # the official recipe's per-dataset defaults".format(
        " ".join(recipe.opts))]
    arms = []
    for datasets, cfg, extra in recipe.cases():
        acts = []
        if cfg:
            acts.append("CFG=" + cfg)
        if extra:
            acts.append("RECIPE_OPTS+=({})".format(" ".join(extra)))
        if epoch_of is not None:
            epoch = epoch_of(cfg, extra)
            if epoch is not None:
                acts.append("LOADEP={}".format(epoch))
        arms.append("    {}) {} ;;".format(" | ".join(datasets), "; ".join(acts)))
    lines += ['case "$DATASET" in'] + arms + ["esac"]
    return "\n".join(lines) + "\n"


def _opts(recipe):
    return ['"${RECIPE_OPTS[@]}"'] if _recipe_lines(recipe) else []


def b2n_train_script(trainer, cfg, data, usage, cfg_dir, recipe=None):
    shots = recipe.shots if recipe is not None else 16
    return _HEADER.format(what="{}: train on the base classes ({} shots).".format(trainer, shots),
                          usage=usage, cfg_dir=cfg_dir, data=data, trainer=trainer) + """
DATASET=$1
SEED=$2

CFG={cfg}
SHOTS={shots}
{recipe}if [ "$DATASET" = toy ]; then CFG=toy; fi


DIR=output/base2new/train_base/${{DATASET}}/shots_${{SHOTS}}/${{TRAINER}}/${{CFG}}/seed${{SEED}}
""".format(cfg=cfg, shots=shots, recipe=_recipe_lines(recipe)) + _RESUME_NOTE + _run(_train() + [
        "DATASET.NUM_SHOTS ${SHOTS}", "DATASET.SUBSAMPLE_CLASSES base"] + _opts(recipe)
        + ['"${@:3}"'], indent="")


def b2n_test_script(trainer, cfg, epoch, toy_epoch, data, usage, cfg_dir, recipe=None,
                    epoch_of=None):
    shots = recipe.shots if recipe is not None else 16
    return _HEADER.format(what="{}: test the base-class model on the new classes.".format(trainer),
                          usage=usage, cfg_dir=cfg_dir, data=data, trainer=trainer) + """
DATASET=$1
SEED=$2

CFG={cfg}
SHOTS={shots}
LOADEP={epoch}
SUB=new
{recipe}if [ "$DATASET" = toy ]; then CFG=toy; LOADEP={toy_epoch}; fi


COMMON_DIR=${{DATASET}}/shots_${{SHOTS}}/${{TRAINER}}/${{CFG}}/seed${{SEED}}
MODEL_DIR=output/base2new/train_base/${{COMMON_DIR}}
DIR=output/base2new/test_${{SUB}}/${{COMMON_DIR}}
echo "Evaluating the model of ${{MODEL_DIR}} (epoch ${{LOADEP}}) into ${{DIR}}"
""".format(cfg=cfg, shots=shots, epoch=epoch, toy_epoch=toy_epoch,
           recipe=_recipe_lines(recipe, epoch_of)) + _run(_train() + [
        "--model-dir \"${MODEL_DIR}\"", "--load-epoch ${LOADEP}", "--eval-only",
        "DATASET.NUM_SHOTS ${SHOTS}", "DATASET.SUBSAMPLE_CLASSES ${SUB}"] + _opts(recipe)
        + ['"${@:3}"'], indent="")


def xd_train_script(trainer, cfg, data, usage, cfg_dir):
    return _HEADER.format(what="{}: train on ImageNet, all classes (cross-dataset source)."
                          .format(trainer), usage=usage, cfg_dir=cfg_dir, data=data,
                          trainer=trainer) + """
DATASET=${{1:-imagenet}}
SEED=$2

CFG={cfg}
SHOTS=16


DIR=output/${{DATASET}}/${{TRAINER}}/${{CFG}}_${{SHOTS}}shots/seed${{SEED}}
""".format(cfg=cfg) + _RESUME_NOTE + _run(_train() + [
        "DATASET.NUM_SHOTS ${SHOTS}", '"${@:3}"'], indent="")


def xd_test_script(trainer, cfg, epoch, data, usage, cfg_dir):
    return _HEADER.format(what="{}: test the ImageNet model on another dataset.".format(trainer),
                          usage=usage, cfg_dir=cfg_dir, data=data, trainer=trainer) + """
DATASET=$1
SEED=$2

CFG={cfg}
SHOTS=16
LOADEP={epoch}


DIR=output/evaluation/${{TRAINER}}/${{CFG}}_${{SHOTS}}shots/${{DATASET}}/seed${{SEED}}
echo "Evaluating into ${{DIR}}"
""".format(cfg=cfg, epoch=epoch) + _run(_train() + [
        "--model-dir \"output/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}\"",
        "--load-epoch ${LOADEP}", "--eval-only", '"${@:3}"'], indent="")


def dg_script(data, usage):
    cases = "\n".join('    {}) DOMAINS="{}" ;;'.format(name, domains)
                      for name, domains in DG_DOMAINS.items())
    return _HEADER.format(
        what="GuiDG: experts of the source domains (step 1), then guided fine-tuning and "
             "the test on TARGET (step 2).", usage=usage, cfg_dir="GuiDG", data=data,
        trainer="GuiDG") + """
DATASET=$1
TARGET=$2
SEED=$3

CFG=vit_b16_clipood
EXPERT_CFG=vit_b16_c16_ep31
SHOTS=16
DATASET_CFG=${{DATASET}}
if [ "$DATASET" = toy ]; then CFG=toy; EXPERT_CFG=toy; DATASET_CFG=toy_dg; fi
case ${{PRESET:-ours}} in  # official: the *_official configs (the official training loop)
    ours) ;;
    official) CFG=${{CFG}}_official; EXPERT_CFG=${{EXPERT_CFG}}_official ;;
    *) echo "PRESET=$PRESET is not a preset: use ours (the default) or official"; exit 1 ;;
esac
case $DATASET in
{cases}
    *) echo "$DATASET is not a DG dataset of GuiDG"; exit 1 ;;
esac

SOURCES=""
for D in $DOMAINS; do
    if [ "$D" != "$TARGET" ]; then SOURCES="${{SOURCES:+$SOURCES, }}'$D'"; fi
done

EXPERTS=output/dg/${{DATASET}}/shots_${{SHOTS}}/GuiDGExpert/${{EXPERT_CFG}}
for D in $DOMAINS; do
    [ "$D" = "$TARGET" ] && continue
    # a finished expert (its last checkpoint and its test's accuracy) is reused;
    # one stopped before (model-best.pth.tar, run_state.pth there) resumes
    E=${{EXPERTS}}/expert_${{D}}/seed${{SEED}}
    if grep -qs '^\* accuracy:' "${{E}}"/log.txt* && compgen -G "${{E}}/prompt_learner/model.pth.tar-*" > /dev/null; then
        echo "Reusing the expert of ${{D}}"
        continue
    fi
    echo "Step 1: the expert of ${{D}}"
""".format(cases=cases) + _run(_train("GuiDGExpert", "${DATASET_CFG}", "GuiDGExpert", "${EXPERT_CFG}",
                "${EXPERTS}/expert_${D}/seed${SEED}") + [
        "DATASET.SOURCE_DOMAINS \"['${D}']\"", "DATASET.TARGET_DOMAINS \"['${D}']\"",
        "DATASET.DG_TRAIN_POOL A", "DATASET.NUM_SHOTS ${SHOTS}", '"${@:4}" || exit 1']) + """done

DIR=output/dg/${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/${TARGET}/seed${SEED}
if grep -qs '^\* accuracy:' "${DIR}/log.txt"; then
    echo "The results exist at ${DIR} (so skip this job)"
    exit 0
fi
echo "Step 2: ${TRAINER} on ${SOURCES} -> ${TARGET} in ${DIR}"
""" + _run(_train(dataset_cfg="${DATASET_CFG}") + [
        "DATASET.SOURCE_DOMAINS \"[${SOURCES}]\"", "DATASET.TARGET_DOMAINS \"['${TARGET}']\"",
        "DATASET.DG_TRAIN_POOL B", "DATASET.NUM_SHOTS ${SHOTS}",
        "TRAINER.GUIDG.EXPERT_DIR \"${EXPERTS}/expert_{domain}/seed${SEED}\"", '"${@:4}"'], indent="")


def host_files(checkout, data):
    """``{relative path: text}`` of every file the drop-in writes."""
    configs = configs_root()
    files = collections.OrderedDict()
    own = host_trainers(checkout)
    baselines = collections.OrderedDict((folder, spec) for folder, spec in BASELINE_METHODS.items()
                                        if spec[0] not in own)
    for folder in CONFIG_FOLDERS + tuple(trainer for trainer, _ in baselines.values()):
        src = os.path.join(configs, "trainers", folder)
        for name in sorted(os.listdir(src)):
            if name.endswith(".yaml"):
                with open(os.path.join(src, name)) as f:
                    files["configs/trainers/{}/{}".format(folder, name)] = f.read()
    for name in DATASET_CONFIGS:
        with open(os.path.join(configs, "datasets", name + ".yaml")) as f:
            files["configs/datasets/{}.yaml".format(name)] = f.read()

    suffix = host_script_suffix(checkout)

    def script(folder, job):
        return "scripts/{}/{}{}.sh".format(folder, job, "_" + folder if suffix else "")

    def base2new(folder, trainer, cfg):
        def epoch_of(dataset_cfg, opts):  # a dataset's LOADEP where it differs
            if max_epoch_opt(opts) is not None:
                return max_epoch_opt(opts)
            if dataset_cfg:
                return max_epoch(os.path.join(configs, "trainers", trainer, dataset_cfg + ".yaml"))
            return None

        epoch = max_epoch(os.path.join(configs, "trainers", trainer, cfg + ".yaml"))
        toy_epoch = max_epoch(os.path.join(configs, "trainers", trainer, "toy.yaml"))
        path = script(folder, "base2new_train")
        files[path] = b2n_train_script(trainer, cfg, data, path + " DATASET SEED", trainer,
                                       recipe(folder))
        path = script(folder, "base2new_test")
        files[path] = b2n_test_script(trainer, cfg, epoch, toy_epoch, data,
                                      path + " DATASET SEED", trainer, recipe(folder), epoch_of)

    for folder, (trainer, cfg, xd_cfg) in B2N_METHODS.items():
        base2new(folder, trainer, cfg)
        xd_epoch = max_epoch(os.path.join(configs, "trainers", trainer, xd_cfg + ".yaml"))
        path = script(folder, "xd_train")
        files[path] = xd_train_script(trainer, xd_cfg, data, path + " imagenet SEED", trainer)
        path = script(folder, "xd_test")
        files[path] = xd_test_script(trainer, xd_cfg, xd_epoch, data, path + " DATASET SEED",
                                     trainer)
    path = script("guidg", "dg")
    files[path] = dg_script(data, path + " DATASET TARGET_DOMAIN SEED")
    for folder, (trainer, cfg) in baselines.items():
        base2new(folder, trainer, cfg)
    return files


# ---------------------------------------------------------------- actions
def _digest(data):
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _file_digest(path):
    with open(path, "rb") as f:
        return _digest(f.read())


def _read_record(checkout):
    path = os.path.join(checkout, RECORD)
    if not os.path.isfile(path):
        return {"files": {}}
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError as err:
        raise UserInputError("{}: unreadable drop-in record ({}); remove the plugin's files by "
                             "hand or delete the record to start over.".format(path, err))


def _write_atomic(path, data, mode=None):
    """Write ``data`` (text or bytes) to ``path`` through a temporary file
    renamed into place; a file replaced keeps its permissions."""
    tmp = path + TMP_SUFFIX
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    if mode is None and os.path.exists(path):
        mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, path)


def _patch_train_py(train_py, text, new_text):
    """Write ``new_text`` into ``train_py`` (the original kept beside it),
    then parse what was written: where it does not parse, put the original
    back and refuse."""
    backup = train_py + BACKUP_SUFFIX
    made_backup = not os.path.exists(backup)
    if made_backup:
        _write_atomic(backup, _encode(text))
    _write_atomic(train_py, _encode(new_text))
    error = _syntax_error(_read_text(train_py))
    if error:
        _write_atomic(train_py, _encode(text))
        if made_backup:
            os.remove(backup)
        raise UserInputError(
            "{}: with the plugin lines it does not parse ({}), so it was put back as it was and "
            "nothing else was written; add 'import clipwb.plugin' after its trainer imports and "
            "'clipwb.plugin.extend_cfg(cfg)' after its extend_cfg(cfg) call by hand.".format(
                train_py, error))


def dropin(checkout, data=None, dry_run=False, say=print):
    """Add the plugin to ``checkout``; return the list of actions said."""
    checkout = os.path.abspath(checkout)
    train_py, text = read_host(checkout)
    record = _read_record(checkout)
    record_path = os.path.join(checkout, RECORD)
    had_record = os.path.isfile(record_path)
    data = _plain_data(data) if data else host_data_default(checkout, record["files"])
    actions, recorded = [], []

    def act(line):
        actions.append(line)
        say(line)

    def remember(rel, content):
        """Enter ``rel`` in the record before it is written, so an undo finds it
        whenever the drop-in stops."""
        record["files"][rel] = _digest(content)
        _write_atomic(record_path, json.dumps(record, indent=1, sort_keys=True))
        recorded.append(rel)

    new_text = patched_train_py(text)
    if new_text == text:
        act("train.py: already has the plugin lines")
    else:
        if not dry_run:
            _patch_train_py(train_py, text, new_text)
        act("train.py: added '{}' and '{}' (original kept as train.py{})".format(
            "import clipwb.plugin", "clipwb.plugin.extend_cfg(cfg)", BACKUP_SUFFIX))

    files = host_files(checkout, data)
    for rel, content in files.items():
        path = os.path.join(checkout, rel)
        if os.path.exists(path):
            digest = _file_digest(path)
            act("{}: {}".format(rel, "already there" if digest == _digest(content) else
                                "kept as an earlier drop-in wrote it (not overwritten)"
                                if record["files"].get(rel) == digest else
                                "kept the checkout's file (not overwritten)"))
            continue
        if not dry_run:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            remember(rel, content)
            _write_atomic(path, content, 0o755 if rel.endswith(".sh") else None)
        else:
            recorded.append(rel)
        act("{}: written".format(rel))
    if recorded:
        act("{}: {} (the files --undo removes)".format(RECORD, "updated" if had_record else "written"))
    elif had_record:
        act("{}: unchanged".format(RECORD))
    act("Done{}. Run e.g. bash {} toy 1 (DATA={}); undo with python -m clipwb.dropin {} --undo"
        .format(" (dry run: nothing written)" if dry_run else "",
                next(rel for rel in files if "disa/base2new_train" in rel),
                data, checkout))
    return actions


def _remove(path, checkout):
    """Remove the file ``path`` and the folders it leaves empty below ``checkout``."""
    os.remove(path)
    folder = os.path.dirname(path)
    while folder != checkout and os.path.isdir(folder) and not os.listdir(folder):
        os.rmdir(folder)
        folder = os.path.dirname(folder)


def undo(checkout, say=print):
    """Take the plugin out of ``checkout``; return the list of actions said."""
    checkout = os.path.abspath(checkout)
    train_py = os.path.join(checkout, "train.py")
    if not os.path.isfile(train_py):
        raise UserInputError("{}: no train.py there; nothing to undo.".format(train_py))
    record = _read_record(checkout)
    actions = []

    def act(line):
        actions.append(line)
        say(line)

    text = _read_text(train_py)
    if MARK in text:
        text = unpatched_train_py(text)
        _write_atomic(train_py, _encode(text))
        act("train.py: removed the plugin lines")
    else:
        act("train.py: has no plugin lines")
    backup = train_py + BACKUP_SUFFIX
    if os.path.isfile(backup):
        if _read_text(backup) == text:
            os.remove(backup)
            act("train.py{}: removed (train.py is that original again)".format(BACKUP_SUFFIX))
        else:
            act("train.py{}: kept: train.py was edited since the drop-in, and this is its copy "
                "from before the drop-in (delete it when you no longer need it)".format(
                    BACKUP_SUFFIX))
    for rel, digest in sorted(record.get("files", {}).items()):
        path = os.path.join(checkout, rel)
        if os.path.isfile(path + TMP_SUFFIX):  # a drop-in stopped while writing it
            _remove(path + TMP_SUFFIX, checkout)
            act("{}{}: removed (half-written)".format(rel, TMP_SUFFIX))
        if not os.path.isfile(path):
            continue
        if _file_digest(path) != digest:
            act("{}: edited since the drop-in, kept".format(rel))
            continue
        _remove(path, checkout)
        act("{}: removed".format(rel))
    record_path = os.path.join(checkout, RECORD)
    if os.path.isfile(record_path):
        os.remove(record_path)
        act("{}: removed".format(RECORD))
    act("Done: the plugin is out of {}".format(checkout))
    return actions


def say(line):
    """Print ``line``; once stdout is closed (``| head -1``), print nothing
    more and carry on, so the drop-in or undo is never left half done."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error at exit
        os.close(devnull)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m clipwb.dropin",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", help="root of a CoOp / MaPLe / PromptSRC checkout")
    parser.add_argument("--data", default="",
                        help="DATA of the written scripts [the one the checkout's scripts use]")
    parser.add_argument("--undo", action="store_true", help="take the plugin out again")
    parser.add_argument("--dry-run", action="store_true", help="say what would be done")
    args = parser.parse_args(argv)
    try:
        if args.undo:
            undo(args.checkout, say=say)
        else:
            dropin(args.checkout, data=args.data or None, dry_run=args.dry_run, say=say)
    except UserInputError as err:
        print("Error: {}".format(err), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
