"""Fingerprints of a trainer's initial learnable parameters, from the official
code or ours, for the tests to compare (``tests/data/official_initial_draws.json``).

    python benchmarks/official_parity/record_draws.py --checkout PATH [--dassl PATH] \
        --trainer MaPLe --prec fp16 --out FILE [--seed 1]
    python benchmarks/official_parity/record_draws.py --ours --trainer MaPLe ...

The trainer's ``train.py`` runs with ``build_trainer`` wrapped: once the
trainer is built (data, CLIP, prompt learner: everything that draws), every
learnable tensor is fingerprinted (dtype, shape, SHA-256 of its bytes, its
first values) under our state-dict names (the official ones converted as our
checkpoint loader converts them), with the SHA-256 of torch's generator state
(which fixes the data order that follows), and the run stops. The run is the
toy world laid out as Caltech101, base classes, 16 shots, the toy CLIP file,
the trainer's toy config and ``PREC``; ``--prec fp16`` keeps fp16 on the CPU
(``PREC_ON_CPU=1`` on our side). ``--out`` gets one entry per (trainer,
precision, seed) added (an existing entry is replaced only with
``--replace``).
"""
import argparse
import hashlib
import json
import os
import runpy
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TOY_CLIP = os.path.join(REPO, "clipwb", "toyworld", "toy_clip.pt")
#: each comparable trainer and its PREC key (compare.py uses the same table)
PREC_KEYS = {"CoOp": "COOP", "KgCoOp": "COOP", "CoCoOp": "COCOOP", "IVLP": "IVLP",
             "MaPLe": "MAPLE",
             "PromptSRC": "PROMPTSRC", "TCP": "COOP", "ProGrad": "COOP",
             "MMRL": "MMRL",
             "MultiModalAdapter": "MMADAPTER",
             "ExtrasLinearProbeCoOp": "COOP", "ExtrasLinearProbeCoCoOp": "COCOOP",
             "ExtrasLinearProbeKgCoOp": "COOP", "ExtrasLinearProbeMaPLe": "MAPLE"}
#: extra KEY VALUE pairs a trainer's official train.py needs on its command line
#: (MMRL's reads TASK from there)
TRAINER_OPTS = {"MMRL": ["TASK", "B2N"]}


#: DePT's head parameters, named alike on both sides
DEPT_HEAD_PREFIXES = ("film_lp_img.", "film_lp_text.", "linear_probe_proj.")
#: parameters an official trainer marks trainable but never uses (no gradient
#: reaches them; their draws are in the generator's state): DePT's KgCoOp
#: trains every ``prompt_learner.*``, which holds KgCoOp's unused
#: ``bias_vectors`` and ``meta_net``
NEVER_TRAINED = {"ExtrasLinearProbeKgCoOp": ("bias_vectors", "meta_net.")}


def tensor_fingerprint(tensor):
    """``{dtype, shape, sha256, head}`` of a tensor's exact bytes."""
    import torch

    data = tensor.detach().cpu().contiguous()
    raw = data.view(torch.uint8) if data.dim() else data.reshape(1).view(torch.uint8)
    return {"dtype": str(data.dtype).replace("torch.", ""), "shape": list(data.shape),
            "sha256": hashlib.sha256(raw.numpy().tobytes()).hexdigest(),
            "head": [float(v) for v in data.flatten()[:4].float()]}


def trainer_fingerprints(trainer):
    """Fingerprints of every learnable tensor of a built trainer (our names)
    and of torch's generator state (Python's is left out: the few-shot
    draw it makes is skipped whenever the shots' cache exists)."""
    import torch

    from clipwb.trainers.kit.prompt_learners import convert_legacy_state_dict

    params = {}
    for name in trainer.get_model_names():
        learnable = {n: p for n, p in trainer._models[name].named_parameters()
                     if p.requires_grad}
        # DePT's head keeps its official names (children of the official
        # CustomCLIP, of our head module): film_lp_img.scale, linear_probe_proj.weight
        head = {n: p for n, p in learnable.items() if n.startswith(DEPT_HEAD_PREFIXES)}
        params.update(convert_legacy_state_dict(
            {n: p for n, p in learnable.items() if n not in head}))
        params.update(head)
    skip = NEVER_TRAINED.get(type(trainer).__name__, ())
    params = {n: p for n, p in params.items() if not n.startswith(skip)} if skip else params
    torch_state = torch.get_rng_state().numpy().tobytes()
    return {
        "params": {n: tensor_fingerprint(p) for n, p in sorted(params.items())},
        "torch_rng_sha256": hashlib.sha256(torch_state).hexdigest(),
    }


def _wrap_build_trainer(module, out, key, replace):
    build = module.build_trainer

    def build_trainer(cfg):
        trainer = build(cfg)
        record = trainer_fingerprints(trainer)
        entries = {}
        if os.path.exists(out):
            with open(out) as f:
                entries = json.load(f)
        if key in entries and not replace:
            raise SystemExit("error: {} already holds {}; pass --replace to record it "
                             "again.".format(out, key))
        entries[key] = record
        with open(out + ".tmp", "w") as f:
            json.dump(entries, f, indent=1, sort_keys=True)
        os.replace(out + ".tmp", out)
        print("Recorded {} in {}".format(key, out))
        raise SystemExit(0)

    module.build_trainer = build_trainer


def parity_config(trainer):
    """The trainer's ``toy_parity.yaml`` where it ships one (its toy config
    as both codes can merge it), else its ``toy.yaml``."""
    folder = os.path.join(REPO, "configs", "trainers", trainer)
    parity = os.path.join(folder, "toy_parity.yaml")
    return parity if os.path.isfile(parity) else os.path.join(folder, "toy.yaml")


def train_arguments(trainer, prec, seed, data, output_dir, dataset_cfg):
    """The ``train.py`` arguments of a recording run (the trainer's
    :func:`parity_config`)."""
    config = parity_config(trainer)
    return ["--root", data, "--seed", str(seed), "--trainer", trainer,
            "--dataset-config-file", dataset_cfg, "--config-file", config,
            "--output-dir", output_dir,
            "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base",
            "MODEL.BACKBONE.NAME", TOY_CLIP, "TRAINER.{}.PREC".format(PREC_KEYS[trainer]), prec,
            *TRAINER_OPTS.get(trainer, [])]


def record_key(trainer, prec, seed):
    return "{}/{}/seed{}".format(trainer, prec, seed)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", default="", help="the official repository's folder")
    parser.add_argument("--dassl", default="", help="Dassl.pytorch's source folder")
    parser.add_argument("--ours", action="store_true", help="record this repository's trainer")
    parser.add_argument("--trainer", required=True, choices=sorted(PREC_KEYS))
    parser.add_argument("--prec", default="fp32", choices=("fp32", "fp16"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", default="official_parity_runs", help="data / output folder")
    parser.add_argument("--out", required=True, help="the JSON file to add the record to")
    parser.add_argument("--replace", action="store_true")
    args = parser.parse_args(argv)
    if bool(args.ours) == bool(args.checkout):
        parser.error("give --checkout (the official code) or --ours")
    out = os.path.abspath(args.out)
    work = os.path.abspath(args.work)
    side = "ours" if args.ours else "official"
    sys.path.insert(0, REPO)
    from benchmarks.official_parity.toy_caltech import write_toy_caltech

    data = write_toy_caltech(os.path.join(work, "draws_data_" + side),
                             toy_root=os.path.join(work, "toy_world"))
    output_dir = os.path.join(work, "draws_{}_{}_{}".format(side, args.trainer, args.prec))
    key = record_key(args.trainer, args.prec, args.seed)
    if args.ours:
        if args.prec != "fp32":
            os.environ["PREC_ON_CPU"] = "1"
        os.environ.setdefault("DASSL_BACKEND", "builtin")
        sys.path.remove(REPO)
        import clipwb.engine as engine

        _wrap_build_trainer(engine, out, key, args.replace)
        script = os.path.join(REPO, "train.py")
        dataset_cfg = os.path.join(REPO, "configs", "datasets", "caltech101.yaml")
    else:
        sys.path.remove(REPO)
        sys.path.insert(0, HERE)
        import official_patches  # noqa: E402

        if args.dassl:
            sys.path.insert(0, os.path.abspath(args.dassl))
        official_patches.apply(args.checkout)
        import dassl.engine

        _wrap_build_trainer(dassl.engine, out, key, args.replace)
        script = os.path.join(os.path.abspath(args.checkout), "train.py")
        dataset_cfg = "configs/datasets/caltech101.yaml"
        os.chdir(os.path.abspath(args.checkout))
    sys.argv = [script] + train_arguments(args.trainer, args.prec, args.seed, data,
                                          output_dir, dataset_cfg)
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
