"""A self-contained HTML page: the table plus the figures embedded as base64 PNG (one file to share)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

__all__ = ["render_html"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: 1em 1em 0 0; }
figcaption { font-size: 0.9em; color: #555; }
img { max-width: 100%; }
"""


def _table(header: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for line in cells:
        tds = [f"<td{'' if i < 2 else ' class=num'}>{html.escape(c)}</td>" for i, c in enumerate(line)]
        body.append("<tr>" + "".join(tds) + "</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


def _figure(caption: str, png: Path) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    alt = html.escape(caption)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
        f"<figcaption>{alt} ({html.escape(png.name)})</figcaption></figure>"
    )


def render_html(
    title: str,
    header: Sequence[str],
    cells: Sequence[Sequence[str]],
    figures: Sequence[tuple[str, Path]],
    notes: Sequence[str] = (),
    comparison: tuple[str, Sequence[str], Sequence[Sequence[str]]] | None = None,
) -> str:
    """The report page; `figures` are (caption, PNG path) pairs, embedded so the page needs no other file;
    `comparison`: (heading, header, cells) of the table against the baseline."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _table(header, cells),
    ]
    if notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    if comparison is not None:
        heading, c_header, c_cells = comparison
        parts += [f"<h2>{html.escape(heading)}</h2>", _table(c_header, c_cells)]
    if figures:
        parts.append("<h2>Figures</h2>")
        parts += [_figure(caption, png) for caption, png in figures]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
