"""benchmarks/: the CLI builds trainers in-process and writes the table
(functional only, no timing asserts), and the frozen-CLIP text features are
computed once per run, not per training step or test batch."""
import pytest
import torch

from benchmarks import run
from benchmarks.harness import BenchSettings, Workbench, rotated
from benchmarks.report import COLUMNS
from clipwb.errors import ConfigError, MissingFileError
from clipwb.trainers.kit.prompted_clip import text_feature_cache


def table_rows(markdown):
    """Rows of the first Markdown table as dicts keyed by its header."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    header, body = cells[0], cells[2:]
    return header, [dict(zip(header, row)) for row in body]


def test_cli_measures_two_trainers_and_writes_the_table(tmp_path, capsys):
    out = tmp_path / "results.md"
    code = run.main(["--backbone", "tiny", "--trainers", "IVLP", "PromptSRC", "--steps", "2",
                     "--warmup", "1", "--eval-batches", "1", "--classes", "3",
                     "--test-batch", "4", "--workdir", str(tmp_path / "work"),
                     "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "device: " in printed and "step / PromptSRC" in printed
    header, rows = table_rows(out.read_text())
    assert header == COLUMNS
    assert [r["trainer"] for r in rows] == ["IVLP", "PromptSRC"]
    for row in rows:
        assert row["prec"] == "fp32" and row["batch"] == "4"  # the configs' batch size
        for column in ("step ms", "eval img/s", "model MiB"):
            assert float(row[column]) > 0, (column, row)
        assert float(row["train mem MiB"]) >= 0 and float(row["eval mem MiB"]) >= 0
    by_name = {r["trainer"]: r for r in rows}
    assert float(by_name["IVLP"]["step / IVLP"]) == 1.0
    assert float(by_name["PromptSRC"]["step / PromptSRC"]) == 1.0
    assert by_name["IVLP"]["eval target"] == "n/a (run ZeroshotCLIP too)"
    assert (tmp_path / "work" / "clip_tiny.pt").is_file()


def test_bad_arguments_are_clear_errors(tmp_path, capsys):
    assert run.main(["--trainers", "NoSuchTrainer", "--backbone", "tiny",
                     "--workdir", str(tmp_path)]) == 2
    assert "NoSuchTrainer" in capsys.readouterr().err
    with pytest.raises(MissingFileError, match="missing.pt"):
        Workbench(BenchSettings(backbone=str(tmp_path / "missing.pt"), workdir=str(tmp_path)))
    with pytest.raises(ConfigError, match="--steps"):
        BenchSettings(steps=0).resolved()


class TextEncoderCalls:
    """Counts the text encoder's frozen calls (``encode_text``: the class
    names x templates path of the teacher) and its prompted calls."""

    def __init__(self, encoder):
        self.frozen = self.prompted = 0
        self._inside_frozen = False
        forward, encode_text = encoder.forward, encoder.encode_text

        def counting_forward(*args, **kwargs):
            if not self._inside_frozen:
                self.prompted += 1
            return forward(*args, **kwargs)

        def counting_encode_text(*args, **kwargs):
            self.frozen += 1
            self._inside_frozen = True
            try:
                return encode_text(*args, **kwargs)
            finally:
                self._inside_frozen = False

        encoder.forward, encoder.encode_text = counting_forward, counting_encode_text


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    settings = BenchSettings(backbone="tiny", n_classes=3, test_batch=4,
                             workdir=str(tmp_path_factory.mktemp("bench")))
    with Workbench(settings) as workbench:
        yield workbench


@pytest.mark.parametrize("name", ["PromptSRC", "DiSa"])
def test_frozen_text_features_once_per_run(bench, name):
    trainer = bench.build(name)
    teacher = trainer.model.zero_shot.text_features
    assert teacher.shape == (3, 64)
    calls = TextEncoderCalls(trainer.model.text_encoder)
    if name == "DiSa":
        prototypes = trainer.class_prototypes()  # computed by bench.build, once per run
        computed = []
        trainer.compute_prototypes = lambda: computed.append(1)
    batch = bench.random_batch(4, trainer.device, seed=0)
    trainer.batch_idx, trainer.num_batches = 0, 10 ** 9
    for _ in range(3):
        trainer.forward_backward(batch)
    # one prompted text pass per step, no frozen (templates) pass
    assert (calls.frozen, calls.prompted) == (0, 3)
    assert trainer.model.zero_shot.text_features is teacher
    if name == "DiSa":
        assert computed == [] and trainer.class_prototypes() is prototypes

    trainer.set_model_mode("eval")
    images = bench.random_batch(4, trainer.device, seed=1)["img"]
    with torch.no_grad(), text_feature_cache(trainer.model):
        logits = [trainer.model_inference(images) for _ in range(3)]
    # the prompted text features once per evaluation, reused by every batch
    assert (calls.frozen, calls.prompted) == (0, 4)
    assert logits[0].shape == (4, 3) and torch.allclose(logits[0], logits[2])


def test_isp_lite_variant_is_isp_without_the_per_step_frozen_pass(bench):
    """``ISP-lite`` builds the ISP trainer from the lite config: the
    difficulty table is made at build time (once per run), and a step runs
    the image encoder once (prompted), where the default ISP runs it twice."""
    passes = {}
    for name in ("ISP", "ISP-lite"):
        trainer = bench.build(name)
        assert type(trainer).__name__ == "ISP"
        encoder = trainer.model.zero_shot.image_encoder
        calls = []
        handle = encoder.register_forward_hook(lambda *args: calls.append(1))
        batch = bench.random_batch(4, trainer.device, seed=0)
        trainer.batch_idx, trainer.num_batches = 0, 10 ** 9
        trainer.forward_backward(batch)
        handle.remove()
        passes[name] = len(calls)
        if name == "ISP-lite":
            assert trainer.method_cfg.PROBE_SOURCE == "frozen_once"
            assert trainer._difficulty is not None  # made by bench.build, before the steps
    assert passes == {"ISP": 2, "ISP-lite": 1}


def test_disa_batched_variant_runs_one_prompted_image_pass(bench):
    """``DiSa-batched`` is DiSa with TRAINER.DISA.MASK_IMPL batched: the full
    and the masked images in one prompted pass of twice the batch."""
    for name, expected in (("DiSa", [4, 4]), ("DiSa-batched", [8])):
        trainer = bench.build(name)
        assert type(trainer).__name__ == "DiSa"
        assert trainer.method_cfg.MASK_IMPL == ("batched" if name == "DiSa-batched" else "gather")
        encoder = trainer.model.image_encoder
        sizes = []
        original = encoder.encode

        def encode(image, shallow_prompts=None, *args, **kwargs):
            if shallow_prompts is not None:
                sizes.append(image.shape[0])
            return original(image, shallow_prompts, *args, **kwargs)

        encoder.encode = encode
        trainer.batch_idx, trainer.num_batches = 0, 10 ** 9
        trainer.forward_backward(bench.random_batch(4, trainer.device, seed=0))
        assert sizes == expected, name


def test_variant_step_ratio_is_printed_under_the_table(tmp_path, capsys):
    code = run.main(["--backbone", "tiny", "--trainers", "DiSa", "DiSa-batched", "--steps", "1",
                     "--warmup", "1", "--eval-batches", "1", "--classes", "3",
                     "--test-batch", "4", "--workdir", str(tmp_path / "work"),
                     "--out", str(tmp_path / "results.md")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "DiSa-batched: step " in printed and "x DiSa's (" in printed
    header, rows = table_rows((tmp_path / "results.md").read_text())
    assert [r["trainer"] for r in rows] == ["DiSa", "DiSa-batched"]
    assert rows[1]["step target"] == "n/a (run PromptSRC too)"
    assert "- DiSa-batched: step " in (tmp_path / "results.md").read_text()


def test_timed_rounds_start_with_each_trainer_in_turn():
    items = ["a", "b", "c"]
    assert [rotated(items, r) for r in range(4)] == [
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
