import json

from sqft.cli import main
from tests.report.helpers import make_artifact, pipeline_artifacts
from tests.report.test_plots import png_size


def test_cli_writes_report(tmp_path, capsys):
    a = pipeline_artifacts(tmp_path / "arts")
    out = tmp_path / "report"
    args = ["report", *(str(a[k]) for k in ("adapter", "search", "merged", "bare")), "-o", str(out), "-q"]
    assert main([*args, "--title", "Llama <3> GSM8K"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "accuracy_per_pipeline.png",
        "accuracy_vs_sparsity.png",
        "rank_distribution_search.png",
        "report.html",
        "report.json",
        "report.md",
        "sqft.json",
    ]
    md = (out / "report.md").read_text()
    assert md.startswith("# Llama <3> GSM8K\n")
    assert (
        "| merged | merge / sqft-sparsepeft | 50.0 [35.2, 64.8] n=40 | – | 12.35 | 50.1% | 16 | 2.0 GiB |"
        in md
    )
    # each artifact vs the first (the adapter): merged is paired on the same 40 GSM8K items
    comparison = md[md.index("## Comparison with adapter") :]
    assert "| merged | adapter | -2.5 [-15.0, +7.5] |" in comparison
    assert "![Accuracy vs sparsity (paper Fig. 5)](accuracy_vs_sparsity.png)" in md
    html = (out / "report.html").read_text()
    assert "<title>Llama &lt;3&gt; GSM8K</title>" in html  # escaped
    assert html.count('src="data:image/png;base64,') == 3  # figures embedded: the page stands alone
    assert "<td class=num>32.0 [20.8, 45.8] / 34.0 [22.4, 47.8] n=50</td>" in html
    assert "<h2>Comparison with adapter</h2>" in html and "<td class=num>-2.5 [-15.0, +7.5]</td>" in html
    rows = json.loads((out / "report.json").read_text())
    assert [r["label"] for r in rows] == ["adapter", "search", "merged", "bare"]
    assert rows[2]["vs_baseline"] == [
        {"task": "gsm8k", "metric": "flexible_match", "diff": -0.025, "lo": -0.15, "hi": 0.075, "why": ""}
    ]
    assert json.loads((out / "sqft.json").read_text())["stage"] == "report"
    for png in out.glob("*.png"):
        assert png_size(png)[0] >= 600
    # the printed table is the Markdown one
    printed = capsys.readouterr().out
    assert (
        "| adapter | finetune / shears | 52.5 [37.5, 67.1] n=40 | 32.0 [20.8, 45.8] / 34.0 [22.4, 47.8] n=50 |"
        in printed
    )
    assert "compared with adapter:" in printed and "| merged | adapter | -2.5 [-15.0, +7.5] |" in printed
    # an existing report is refused, then replaced with --overwrite
    assert main(args) == 2
    assert main([*args, "--overwrite", "--no-plots"]) == 0
    assert not list(out.glob("*.png"))


def test_cli_non_artifact_exits_2_and_writes_nothing(tmp_path, capsys):
    good = make_artifact(tmp_path / "good", "sparsify")
    junk = tmp_path / "junk"
    junk.mkdir()
    out = tmp_path / "report"
    assert main(["report", str(good), str(junk), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sqft report: error: ") and f"'{junk}' is not an artifact" in err
    assert err.count("\n") == 1 and not out.exists()
    assert main(["report", str(tmp_path / "missing"), "-o", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_measure_latency(model_dir, tmp_path):
    nothing = make_artifact(tmp_path / "cfg-only", "search")
    out = tmp_path / "report"
    args = ["report", str(model_dir), str(nothing), "-o", str(out), "-q", "--no-plots", "--measure-latency"]
    assert main([*args, "--new-tokens", "3", "--repeats", "1", "--warmup", "0"]) == 0
    rows = json.loads((out / "report.json").read_text())
    assert rows[0]["latency_ms_per_token"] * rows[0]["tokens_per_second"] == __import__("pytest").approx(1000)
    assert rows[1]["latency_ms_per_token"] is None
    md = (out / "report.md").read_text()
    assert "3 new tokens" in md and md.splitlines()[5].endswith("| – | – |")  # cfg-only row: no model to time
