"""Rows against a baseline: paired intervals only on the same items (sqft.report.compare)."""

import pytest

from sqft.cli import main
from sqft.errors import SqftError
from sqft.evaluate.intervals import decode_outcomes, paired_bootstrap
from sqft.report.collect import ReportRow
from sqft.report.compare import Difference, compare_rows
from sqft.report.tables import comparison_cells, format_difference, markdown_comparison
from tests.report.helpers import ADAPTER_GSM8K, MERGED_GSM8K, pipeline_artifacts


def _row(label, acc, correct=None, items="same"):
    outcomes = {"mc": {"correct": {"acc": correct}, "items_sha256": items}} if correct else {}
    return ReportRow(label, path=f"/runs/{label}", tasks={"mc": {"acc": acc}, "wiki": {"perplexity": 3.0}},
                     outcomes=outcomes)  # fmt: skip


ROWS = [
    _row("base", 0.5, "1100"),
    _row("same-items", 0.75, "1110"),
    _row("other-items", 0.75, "1110", items="other"),
    _row("old-results", 0.25),
]


def test_only_rows_on_the_same_items_get_a_paired_interval():
    assert [c.label for c in compare_rows(ROWS)] == ["same-items", "other-items", "old-results"]
    same, other, old = compare_rows(ROWS, None, 2000, 5)
    assert all(c.baseline == "base" for c in (same, other, old))
    expected = paired_bootstrap(decode_outcomes("1100"), decode_outcomes("1110"), 2000, 5)
    assert same.differences == [Difference("mc", "acc", *expected)]  # perplexity is not compared
    assert expected[0] == 0.25 and 0.0 <= expected[1] <= 0.25 <= expected[2]
    assert other.differences == [Difference("mc", "acc", 0.25, why="different items")]
    assert old.differences == [Difference("mc", "acc", -0.25, why="no per-item outcomes")]


def test_baseline_by_label_or_path_and_an_unknown_one_is_refused():
    by_label = compare_rows(ROWS, "same-items", 500)
    assert [c.label for c in by_label] == ["base", "other-items", "old-results"]
    assert by_label[0].differences[0].diff == -0.25
    assert [c.label for c in compare_rows(ROWS, "/runs/same-items", 500)] == [c.label for c in by_label]
    with pytest.raises(SqftError, match="'nope' is none of the report's artifacts.*'base'"):
        compare_rows(ROWS, "nope")


def test_comparison_cells_show_percentage_points_and_why_not_paired():
    assert format_difference(Difference("mc", "acc", 0.032, 0.008, 0.056)) == "+3.2 [+0.8, +5.6]"
    assert format_difference(Difference("mc", "acc", -0.25, why="different items")) == (
        "-25.0 (not paired: different items)"
    )
    header, cells = comparison_cells(compare_rows(ROWS[:3], None, 500))
    assert header == ["artifact", "baseline", "mc acc Δ (pp, paired 95% CI)"]
    assert cells[1] == ["other-items", "base", "+25.0 (not paired: different items)"]
    assert markdown_comparison([]) == ""


def test_cli_baseline_option(tmp_path, capsys):
    a = pipeline_artifacts(tmp_path / "arts")
    out = tmp_path / "report"
    args = ["report", str(a["adapter"]), str(a["merged"]), "-o", str(out), "-q", "--no-plots"]
    assert main([*args, "--baseline", "merged"]) == 0
    md = (out / "report.md").read_text()
    diff, lo, hi = paired_bootstrap(decode_outcomes(MERGED_GSM8K), decode_outcomes(ADAPTER_GSM8K))
    assert "## Comparison with merged" in md
    assert f"| adapter | merged | {100 * diff:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] |" in md
    assert main([*args, "--baseline", "nope", "--overwrite"]) == 2
    assert "'nope' is none of the report's artifacts" in capsys.readouterr().err
    assert main([*args, "--no-compare", "--overwrite"]) == 0
    assert "Comparison" not in (out / "report.md").read_text()
