import struct

import pytest

from sqft.errors import SqftError
from sqft.report.collect import ReportRow
from sqft.report.plots import (
    common_tasks,
    error_bars,
    plot_accuracy_per_pipeline,
    plot_accuracy_vs_sparsity,
    plot_rank_distribution,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _row(label, pipeline, sparsity, **tasks):
    return ReportRow(label, path=None, pipeline=pipeline, sparsity=sparsity, tasks=tasks)


ROWS = [
    _row("a", "shears", 0.3, gsm8k={"flexible_match": 0.5}, mc={"acc": 0.3, "acc_norm": 0.4}),
    _row("b", "shears", 0.5, gsm8k={"flexible_match": 0.45}),
    _row("c", "sqft-sparsepeft", 0.5, gsm8k={"flexible_match": 0.48}, wiki={"perplexity": 9.0}),
    _row("d", None, None),
]


def test_accuracy_per_pipeline_png(tmp_path):
    out = plot_accuracy_per_pipeline(ROWS, tmp_path / "acc.png")
    assert png_size(out) == (720, 480)  # 6 x 4 in at 120 dpi: 3 rows x 2 tasks fit the minimum width
    assert out.stat().st_size > 10_000  # axes, bars and labels, not a blank canvas


def test_accuracy_vs_sparsity_uses_common_tasks(tmp_path):
    assert common_tasks(ROWS[:3]) == ["gsm8k"]  # mc only on "a", perplexity is no accuracy
    out = plot_accuracy_vs_sparsity(ROWS, tmp_path / "vs.png")
    assert png_size(out) == (720, 480) and out.stat().st_size > 10_000


def test_nothing_to_plot_gives_none(tmp_path):
    rows = [_row("d", None, None), _row("e", None, 0.5, wiki={"perplexity": 3.0})]
    assert plot_accuracy_per_pipeline(rows, tmp_path / "a.png") is None
    assert plot_accuracy_vs_sparsity(rows, tmp_path / "b.png") is None
    assert not list(tmp_path.iterdir())


def test_rank_distribution_png(tmp_path):
    space = {f"model.layers.{i}.self_attn": [32, 24, 16] for i in range(6)}
    config = dict(zip(space, [32, 24, 16, 16, 24, 32], strict=True))
    out = plot_rank_distribution(config, space, tmp_path / "ranks.png")
    w, h = png_size(out)
    assert w >= 720 and h == 420 and out.stat().st_size > 5_000
    with pytest.raises(SqftError, match="not in its search space"):
        plot_rank_distribution({**config, "model.layers.0.self_attn": 8}, space, tmp_path / "bad.png")


def test_error_bars_are_the_intervals_in_percent():
    below, above = error_bars([0.5, None, 0.9], [(0.4, 0.7), (0.1, 0.2), None])
    assert below == pytest.approx([10.0, 0.0, 0.0], abs=1e-12) and above == pytest.approx(
        [20.0, 0.0, 0.0], abs=1e-12
    )


def test_accuracy_plots_draw_the_intervals_as_error_bars(tmp_path, monkeypatch):
    from matplotlib.container import BarContainer, ErrorbarContainer

    import sqft.report.plots as plots_mod

    figures = []
    save = plots_mod._save
    monkeypatch.setattr(plots_mod, "_save", lambda fig, path: figures.append(fig) or save(fig, path))
    rows = [
        ReportRow(
            "a",
            None,
            pipeline="p",
            sparsity=0.3,
            tasks={"g": {"acc": 0.5}},
            intervals={"g": {"acc": (0.4, 0.7)}},
        ),
        ReportRow("b", None, pipeline="p", sparsity=0.5, tasks={"g": {"acc": 0.6}}),  # no interval: no bar
    ]
    assert plot_accuracy_per_pipeline(rows, tmp_path / "a.png").is_file()
    assert plot_accuracy_vs_sparsity(rows, tmp_path / "b.png").is_file()
    (bars,) = [c for c in figures[0].axes[0].containers if isinstance(c, BarContainer)]
    segments = bars.errorbar.lines[2][0].get_segments()  # one vertical segment per bar, in percent
    assert [tuple(s[:, 1]) for s in segments] == [pytest.approx((40.0, 70.0)), pytest.approx((60.0, 60.0))]
    (line,) = [c for c in figures[1].axes[0].containers if isinstance(c, ErrorbarContainer)]
    segments = line.lines[2][0].get_segments()
    assert [tuple(s[:, 1]) for s in segments] == [pytest.approx((40.0, 70.0)), pytest.approx((60.0, 60.0))]
