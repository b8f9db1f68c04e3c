import pytest

from sqft.report.collect import collect_rows
from sqft.report.tables import (
    MISSING,
    format_bytes,
    format_count,
    format_metric,
    format_percent,
    format_seconds,
    markdown_table,
    table_cells,
)
from tests.report.helpers import pipeline_artifacts

HEADER = [
    "artifact",
    "stage / pipeline",
    "gsm8k (flexible_match)",
    "mc (acc / acc_norm)",
    "wiki (perplexity)",
    "sparsity",
    "bits",
    "size on disk",
    "trainable params",
    "fine-tuning time",
    "fine-tuning peak memory",
    "latency (ms/token)",
    "throughput (tokens/s)",
]


def test_table_cells_exact(tmp_path):
    a = pipeline_artifacts(tmp_path)
    rows = collect_rows([a["sparse"], a["adapter"], a["search"], a["merged"], a["bare"]])
    rows[3].latency_ms_per_token, rows[3].tokens_per_second = 12.3456, 81.0002
    header, cells = table_cells(rows)
    assert header == HEADER
    assert cells == [
        ["sparse50", "sparsify", "–", "–", "–", "50.1%", "16", "2.0 GiB", "–", "–", "–", "–", "–"],
        [
            "adapter",
            "finetune / shears",
            "52.5 [37.5, 67.1] n=40",
            "32.0 [20.8, 45.8] / 34.0 [22.4, 47.8] n=50",
            "–",
            "50.1%",
            "16",
            "2.0 GiB",
            "1.23M",
            "60.0 min",
            "8.0 GiB",
            "–",
            "–",
        ],
        [
            "search",
            "search / shears",
            "–",
            "–",
            "–",
            "50.1%",
            "16",
            "2.0 GiB",
            "1.23M",
            "60.0 min",
            "8.0 GiB",
            "–",
            "–",
        ],
        [
            "merged",
            "merge / sqft-sparsepeft",
            "50.0 [35.2, 64.8] n=40",
            "–",
            "12.35",
            "50.1%",
            "16",
            "2.0 GiB",
            "1.23M",
            "60.0 min",
            "8.0 GiB",
            "12.35",
            "81.0",
        ],
        ["bare", "–", "–", "–", "–", "–", "–", "23 B", "–", "–", "–", "–", "–"],
    ]


def test_markdown_table_shape(tmp_path):
    a = pipeline_artifacts(tmp_path)
    md = markdown_table(collect_rows([a["adapter"], a["bare"]])).splitlines()
    n = len(HEADER) - 1  # no perplexity column: neither artifact has one
    assert len(md) == 4
    assert md[0].startswith("| artifact | stage / pipeline | gsm8k (flexible_match) |")
    assert md[1] == "| :-- | :-- |" + " --: |" * (n - 2)
    assert md[3] == "| bare |" + f" {MISSING} |" * 5 + " 23 B |" + f" {MISSING} |" * (n - 7)
    assert all(line.count("|") == n + 1 for line in md)


@pytest.mark.parametrize(
    "fn,value,text",
    [
        (format_percent, 0.5, "50.0%"),
        (format_percent, None, "–"),
        (format_metric, ("acc", 0.3333), "33.3"),
        (format_metric, ("perplexity", 7.0), "7.00"),
        (format_bytes, 512, "512 B"),
        (format_bytes, 1536, "1.5 KiB"),
        (format_bytes, 3 * 1024**3, "3.0 GiB"),
        (format_count, 512, "512"),
        (format_count, 4096, "4.10K"),
        (format_count, 8_030_000_000, "8.03B"),
        (format_seconds, 42.04, "42.0 s"),
        (format_seconds, 310, "5.2 min"),
        (format_seconds, 11160, "3.10 h"),
    ],
)
def test_formats(fn, value, text):
    assert (fn(*value) if isinstance(value, tuple) else fn(value)) == text
