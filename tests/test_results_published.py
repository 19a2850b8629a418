"""The published numbers beside ours, per dataset: every recorded entry has a
source and an HM that is 2BN/(B+N) of its Base and Novel; the gap table of
scripts/results.py on real-format Dassl logs (ours mean ± std, published,
difference, ``*`` where the std over seeds exceeds the gap), and the same
numbers in the markdown and the CSV."""
import csv
import io
import math
import os
from collections import OrderedDict

import pytest

from clipwb.errors import UserInputError
from clipwb.results import aggregate, published
from clipwb.results.cli import main
from clipwb.results.published import PublishedResult
from tests.test_results import (CFG, TRAINER, b2n_dir, b2n_root, dassl_log,  # noqa: F401
                                markdown_rows, write)

SRC_LABEL = "PromptSRC / {} / 16 shots".format(CFG)
GAP_TITLE = "Gap to the published numbers: {} vs PromptSRC (published)".format(SRC_LABEL)
SOURCE = "Paper X, Table 1"


def hm(base, novel):
    return 2 * base * novel / (base + novel)


def pop_std(values):
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


# ----------------------------------------------------- the recorded numbers

def test_every_published_entry_has_a_source_and_a_consistent_hm():
    entries = [("average", name, p) for name, p in published.PUBLISHED_BASE2NEW.items()]
    entries += [(dataset, name, p) for name, per in published.PUBLISHED_BASE2NEW_PER_DATASET.items()
                for dataset, p in per.items()]
    assert len(entries) >= 6
    for dataset, name, p in entries:
        assert p.source.strip(), (name, dataset)
        assert abs(hm(p.base, p.novel) - p.hm) <= published.HM_TOLERANCE, (name, dataset, p)
        assert published.published_problems(p) == []
        assert dataset == "average" or dataset in aggregate.BASE2NEW_DATASETS, (name, dataset)
    # the domain-generalization rows: the average is the mean of the domains
    for dataset, table in published.PUBLISHED_DG.items():
        assert table.source.strip() and len(table.domains) == len(table.labels)
        for name, values in table.rows.items():
            assert len(values) == len(table.domains) + 1, (dataset, name)
            assert abs(sum(values[:-1]) / len(table.domains) - values[-1]) <= 0.051, (
                dataset, name, values)


def test_per_dataset_numbers_average_to_the_published_averages():
    # A paper's 11-dataset average is the mean of its per-dataset Base and
    # Novel, its HM the HM of those means: a mistyped cell moves a mean by a
    # eleventh of the slip, which the HM check of the cell alone may not see
    # (a Base and HM both mistyped the same way).
    per = published.PUBLISHED_BASE2NEW_PER_DATASET
    assert list(per) == ["CLIP", "CoOp", "CoCoOp", "MaPLe", "PromptSRC"]
    for name, rows in per.items():
        assert list(rows) == aggregate.BASE2NEW_DATASETS, name
        avg = published.PUBLISHED_BASE2NEW[name]
        base = sum(r.base for r in rows.values()) / 11
        novel = sum(r.novel for r in rows.values()) / 11
        assert abs(base - avg.base) <= 0.01, (name, base, avg)
        assert abs(novel - avg.novel) <= 0.01, (name, novel, avg)
        assert abs(hm(base, novel) - avg.hm) <= 0.02, (name, hm(base, novel), avg)
        assert len({r.source for r in rows.values()}) == 1, name
    # not the mean of the per-dataset HMs: CoOp's is 70.83, its published HM 71.66
    coop = per["CoOp"].values()
    assert sum(r.hm for r in coop) / 11 == pytest.approx(70.832, abs=1e-3)
    # no per-dataset table of IVLP, KgCoOp, ProGrad, TCP, MMRL, MMA or DePT (on
    # PromptSRC) could be read: their averages only (a gap table of theirs
    # would compare with nothing)
    for name in ("IVLP", "KgCoOp", "ProGrad", "TCP", "MMRL", "MMA", "ExtrasLinearProbePromptSRC"):
        assert name not in per and name in published.PUBLISHED_BASE2NEW, name


def test_the_baselines_averages_are_their_sources_digits():
    # KgCoOp: its official README's table (80.73 / 73.6 / 77.0); ProGrad: the
    # same table and two later papers; TCP: a later README's table
    avg = published.PUBLISHED_BASE2NEW
    assert avg["KgCoOp"][:3] == (80.73, 73.60, 77.00)
    assert avg["ProGrad"][:3] == (82.48, 70.75, 76.16)
    assert avg["TCP"][:3] == (84.13, 75.36, 79.51)
    assert avg["MMRL"][:3] == (85.68, 77.16, 81.20)
    # MMA: its official README's table; MMRL and DePT on PromptSRC: a later
    # README's table (the same digits as MMA's README for MMA)
    assert avg["MMA"][:3] == (83.20, 76.80, 79.87)
    assert avg["ExtrasLinearProbePromptSRC"][:3] == (85.19, 76.17, 80.43)
    assert "official repository README" in avg["KgCoOp"].source
    assert "official repository README" in avg["MMA"].source
    for name in ("ProGrad", "TCP", "MMRL", "ExtrasLinearProbePromptSRC"):
        assert "as quoted by" in avg[name].source, name
    assert "Awesome-Prompt-Adapter-Learning-for-VLMs" in avg["MMRL"].source


def test_the_check_catches_a_typo_and_a_missing_source():
    # PromptSRC's 11-dataset average with two digits of the HM swapped
    assert published.published_problems(PublishedResult(84.26, 76.10, 79.79, SOURCE)) == [
        "HM 79.79 but 2BN/(B+N) of Base 84.26 and Novel 76.10 is 79.97"]
    assert published.published_problems(PublishedResult(84.26, 76.10, 79.97, " ")) == [
        "no source (paper, table)"]
    # 2BN/(B+N) = 79.9743...: the rounding of a table passes
    assert published.published_problems(PublishedResult(84.26, 76.10, 79.96, SOURCE)) == []
    # 2 * 80 * 60 / 140 = 68.57, typed 68.75
    with pytest.raises(UserInputError, match=r"^published numbers of MyMethod on dtd: HM 68.75 "
                                             r"but .* is 68.57\. Give the numbers"):
        published.add_published("MyMethod", 80.0, 60.0, 68.75, SOURCE, dataset="dtd")
    assert "MyMethod" not in published.PUBLISHED_BASE2NEW_PER_DATASET


# ------------------------------------------------------------- the flag

@pytest.mark.parametrize("std, diff, noisy", [
    (0.50, 0.40, True), (0.50, -0.40, True), (0.50, 0.60, False), (0.50, -0.60, False),
    (0.50, 0.50, False),  # a std equal to the gap does not exceed it
    (None, 0.10, False), (0.50, None, False), (0.0, 0.0, False)])
def test_within_noise(std, diff, noisy):
    assert aggregate.within_noise(std, diff) is noisy


def test_dataset_gap_by_hand():
    row = aggregate.B2NRow("dtd", 82.0, 1.5, 61.0, 0.2, hm(82.0, 61.0), [1, 2], [1, 2], 0.9)
    gap = aggregate.dataset_gap(row, PublishedResult(83.0, 60.5, 70.0, SOURCE))
    assert gap.diffs == (pytest.approx(-1.0), pytest.approx(0.5),
                         pytest.approx(hm(82.0, 61.0) - 70.0))
    # Base: 1.5 > 1.0; Novel: 0.2 < 0.5; HM: 0.9 < 0.04 is false
    assert hm(82.0, 61.0) - 70.0 == pytest.approx(-0.0419, abs=1e-4)
    assert gap.noisy == (True, False, True)
    # no Novel: no HM, no HM gap, no flag
    row = aggregate.B2NRow("dtd", 82.0, 1.5, None, None, None, [1], [], None)
    gap = aggregate.dataset_gap(row, PublishedResult(83.0, 60.5, 70.0, SOURCE))
    assert gap.diffs == (pytest.approx(-1.0), None, None)
    assert gap.noisy == (True, False, False)


def test_published_method_of_a_trainer(monkeypatch):
    per = published.PUBLISHED_BASE2NEW_PER_DATASET
    monkeypatch.setitem(per, "PromptSRC", OrderedDict(dtd=PublishedResult(1, 1, 1, SOURCE)))
    monkeypatch.setitem(per, "CLIP", OrderedDict(dtd=PublishedResult(1, 1, 1, SOURCE)))
    assert aggregate.published_method("promptsrc") == "PromptSRC"
    assert aggregate.published_method("ZeroshotCLIP") == "CLIP"
    assert aggregate.published_method("DiSa") is None


# ------------------------------------------- beside real parsed runs

# The b2n_root fixture's PromptSRC runs (seeds 1, 2, 3):
#   caltech101 Base 97, 98, 99  Novel 93, 95, 97
#   dtd        Base 80, 82, 84  Novel 60, 60, 63
# and hand-chosen published numbers (HM = 2BN/(B+N), rounded):
#   caltech101: Base 98.50 (gap -0.50, std 0.82: noise), Novel 94.00 (+1.00,
#               std 1.63: noise), HM 96.20 (+0.28, per-seed HM std 1.24: noise)
#   dtd:        Base 83.00 (-1.00, std 1.63: noise), Novel 65.00 (-4.00, std
#               1.41: a real gap), HM 72.91 (-2.95, std 1.48: a real gap)
PUBLISHED = {"caltech101": PublishedResult(98.50, 94.00, 96.20, SOURCE),
             "dtd": PublishedResult(83.00, 65.00, 72.91, SOURCE)}
SEED_ACCS = {"caltech101": ([97.0, 98.0, 99.0], [93.0, 95.0, 97.0]),
             "dtd": ([80.0, 82.0, 84.0], [60.0, 60.0, 63.0])}


def expected_row(dataset):
    """The gap row computed from the seeds' accuracies by hand."""
    bases, novels = SEED_ACCS[dataset]
    p = PUBLISHED[dataset]
    b, n = sum(bases) / 3, sum(novels) / 3
    seed_hms = [hm(x, y) for x, y in zip(bases, novels)]
    cells = [dataset]
    for mean, std, pub in ((b, pop_std(bases), p.base), (n, pop_std(novels), p.novel),
                           (hm(b, n), pop_std(seed_hms), p.hm)):
        diff = mean - pub
        cells += ["{:.2f} ± {:.2f}".format(mean, std), "{:.2f}".format(pub),
                  "{:+.2f}{}".format(diff, "*" if std > abs(diff) else "")]
    return cells


@pytest.fixture
def published_src(monkeypatch):
    """PromptSRC's per-dataset numbers, for this test only."""
    assert published.published_problems(PUBLISHED["dtd"]) == []
    monkeypatch.setitem(published.PUBLISHED_BASE2NEW_PER_DATASET, "PromptSRC",
                        OrderedDict(PUBLISHED))


def section_lines(text, title):
    """The lines of the section ``title`` (up to the next blank line after its notes)."""
    block = text.split(title + "\n\n", 1)[1]
    table, notes = block.split("\n\n")[:2]
    return table.splitlines(), notes.splitlines()


def test_gap_table_beside_parsed_runs(b2n_root, published_src, capsys):
    assert main([str(b2n_root), "--published"]) == 0
    out = capsys.readouterr().out
    lines, notes = section_lines(out, GAP_TITLE)
    cells = [[c for c in line.split("  ") if c.strip()] for line in lines]
    cells = [[c.strip() for c in row] for row in cells]
    assert cells[0] == ["Dataset", "Base", "Published", "Δ", "Novel", "Published", "Δ",
                        "HM", "Published", "Δ"]
    assert cells[2:] == [expected_row("caltech101"), expected_row("dtd")]
    # the hand-computed cells, flag on and off
    assert cells[2] == ["caltech101", "98.00 ± 0.82", "98.50", "-0.50*", "95.00 ± 1.63",
                        "94.00", "+1.00*", "96.48 ± 1.24", "96.20", "+0.28*"]
    assert cells[3] == ["dtd", "82.00 ± 1.63", "83.00", "-1.00*", "61.00 ± 1.41", "65.00",
                        "-4.00", "69.96 ± 1.48", "72.91", "-2.95"]
    assert notes == ["Δ = ours - published; * the standard deviation over seeds exceeds |Δ| "
                     "(the gap is within seed noise)",
                     "(published) PromptSRC: " + SOURCE]
    # after the group's own table, before the published averages
    assert (out.index("Base-to-novel: " + SRC_LABEL) < out.index(GAP_TITLE)
            < out.index("Published 11-dataset averages"))
    assert max(len(line) for line in lines) <= 120
    # the per-trainer view without --published: no gap table
    assert main([str(b2n_root)]) == 0
    assert "Gap to the published numbers" not in capsys.readouterr().out


def test_gap_table_in_the_comparison_and_markdown(b2n_root, published_src, capsys):
    # a second method without published numbers: no gap table of its own
    for seed in (1, 2, 3):
        for phase, acc in (("train_base", 80.0), ("test_new", 70.0)):
            write(os.path.join(b2n_dir(b2n_root, phase, "dtd", seed, trainer="CoOp",
                                       cfg="vit_b16_ctxv1"), "log.txt"), dassl_log(acc))
    assert main([str(b2n_root)]) == 0  # two groups: the comparison
    out = capsys.readouterr().out
    # CoOp ran dtd only: its gap to CoCoOp's Table 1 (79.44 / 41.18 / 54.24)
    # there; ours 80 / 70 on each seed, HM 74.67
    coop_title = ("Gap to the published numbers: CoOp / vit_b16_ctxv1 / 16 shots vs CoOp "
                  "(published)")
    assert out.count("Gap to the published numbers") == 2
    assert out.index(coop_title) < out.index(GAP_TITLE)
    lines, notes = section_lines(out, coop_title)
    assert [c.strip() for c in lines[2].split("  ") if c.strip()] == [
        "dtd", "80.00 ± 0.00", "79.44", "+0.56", "70.00 ± 0.00", "41.18", "+28.82",
        "74.67 ± 0.00", "54.24", "+20.43"]
    assert notes[1] == "(published) CoOp: Zhou et al., CoCoOp, CVPR 2022, Table 1"
    lines, _ = section_lines(out, GAP_TITLE)
    assert [line.split()[0] for line in lines[2:]] == ["caltech101", "dtd"]
    assert main([str(b2n_root), "--format", "markdown"]) == 0
    md = capsys.readouterr().out
    rows = markdown_rows(md.split("### " + GAP_TITLE + "\n", 1)[1].split("###")[0])
    assert rows[1:] == [expected_row("caltech101"), expected_row("dtd")]
    assert "- (published) PromptSRC: " + SOURCE in md


def test_csv_carries_the_same_gaps(b2n_root, published_src, capsys, monkeypatch):
    assert main([str(b2n_root), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    ours = {r["dataset"]: r for r in rows if r["setting"] == "base2new"}
    for dataset in ("caltech101", "dtd"):
        expected = expected_row(dataset)
        r = ours[dataset]
        assert r["published"] == "PromptSRC"
        assert [r["published_base"], r["published_novel"], r["published_hm"]] == expected[2::3]
        diffs = [r["diff_base"], r["diff_novel"], r["diff_hm"]]
        assert ["{:+.2f}".format(float(d)) for d in diffs] == [c.rstrip("*")
                                                              for c in expected[3::3]]
        assert r["within_seed_noise"].split() == [
            name for name, c in zip(("base", "novel", "hm"), expected[3::3]) if c.endswith("*")]
        assert "{} ± {}".format(r["hm"], r["hm_std"]) == expected[7]
    assert ours["dtd"]["within_seed_noise"] == "base"
    assert ours["caltech101"]["within_seed_noise"] == "base novel hm"
    assert ours["Average (2 datasets)"]["published"] == ""
    # without published numbers of the method: empty gap cells
    monkeypatch.delitem(published.PUBLISHED_BASE2NEW_PER_DATASET, "PromptSRC")
    assert main([str(b2n_root), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["diff_hm"] for r in rows} == {""}
