"""Self-contained HTML reports: headings, text, tables, JSON blocks and embedded figures.

One file, no external resources: figures are PNGs embedded as base64 data URIs, every piece of
text is HTML-escaped, and :meth:`HtmlReport.save` writes atomically, so a report can be mailed
or attached as it is.

Example
-------
>>> import tempfile, pathlib
>>> rep = HtmlReport("demo <run>")
>>> rep.add_heading("Results")
>>> rep.add_table([{"metric": "rmse", "value": 1e-3}])
>>> path = rep.save(pathlib.Path(tempfile.mkdtemp()) / "report.html")
>>> "demo &lt;run&gt;" in path.read_text()
True
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

from dynid.atomic import write_text_atomic
from dynid.results import jsonable

_STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; max-width: 60em;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { margin-top: 1.6em; border-bottom: 1px solid #eee; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9em; }
pre { background: #f7f7f7; padding: .6em; overflow-x: auto; font-size: .85em; }
"""


def _fmt_cell(v) -> tuple[str, bool]:
    """Text of a table cell and whether it is numeric (right-aligned)."""
    if isinstance(v, bool) or v is None:
        return str(v), False
    if isinstance(v, int):
        return str(v), True
    if isinstance(v, float):
        return (f"{v:.4g}" if math.isfinite(v) else str(v)), True
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt_cell(x)[0] for x in v) + "]", False
    try:  # numpy scalars
        import numpy as np

        if isinstance(v, np.generic):
            return _fmt_cell(v.item())
    except ImportError:  # pragma: no cover
        pass
    return str(v), False


class HtmlReport:
    """Build a one-file HTML report piece by piece, then :meth:`save` it.

    Parameters
    ----------
    title : the page title and top heading (escaped).

    Example
    -------
    >>> rep = HtmlReport("run")
    >>> rep.add_text("a < b")
    >>> "a &lt; b" in rep.to_html()
    True
    """

    def __init__(self, title: str):
        self.title = str(title)
        self._parts: list[str] = []

    def __len__(self) -> int:
        return len(self._parts)

    def fragments(self, start: int = 0) -> list[str]:
        """The HTML pieces added so far (from the ``start``-th), e.g. to store one stage's
        section and :meth:`extend` a later report with it."""
        return list(self._parts[start:])

    def extend(self, fragments) -> None:
        """Append pieces returned by :meth:`fragments` (trusted HTML, not escaped)."""
        self._parts.extend(str(f) for f in fragments)

    def add_heading(self, text: str, level: int = 2) -> None:
        """A section heading (level 2..4; level 1 is the title)."""
        level = min(max(int(level), 2), 4)
        self._parts.append(f"<h{level}>{html.escape(str(text))}</h{level}>")

    def add_text(self, text: str) -> None:
        """A paragraph of plain text (escaped; blank lines start new paragraphs)."""
        for para in str(text).split("\n\n"):
            self._parts.append(f"<p>{html.escape(para)}</p>")

    def add_table(self, rows, columns=None, caption: str | None = None) -> None:
        """A table from a list of dicts (columns: the union of keys in order of appearance,
        unless given) or from a dict (shown as two columns, key and value)."""
        if isinstance(rows, dict):
            rows = [{"key": k, "value": v} for k, v in rows.items()]
        rows = list(rows)
        if columns is None:
            columns = []
            for r in rows:
                columns += [c for c in r if c not in columns]
        out = ["<table>"]
        if caption:
            out.append(f"<caption>{html.escape(str(caption))}</caption>")
        out.append("<tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in columns) + "</tr>")
        for r in rows:
            cells = []
            for c in columns:
                text, num = _fmt_cell(r.get(c, ""))
                cls = ' class="num"' if num else ""
                cells.append(f"<td{cls}>{html.escape(text)}</td>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</table>")
        self._parts.append("\n".join(out))

    def add_figure(self, fig, caption: str = "", dpi: int = 110) -> None:
        """Embed a matplotlib figure as a base64 PNG (the figure is left open)."""
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        self.add_png(buf.getvalue(), caption)

    def add_png(self, png: bytes, caption: str = "") -> None:
        """Embed PNG bytes."""
        data = base64.b64encode(png).decode("ascii")
        cap = f"<figcaption>{html.escape(str(caption))}</figcaption>" if caption else ""
        self._parts.append(f'<figure><img alt="{html.escape(str(caption), quote=True)}" '
                           f'src="data:image/png;base64,{data}">{cap}</figure>')

    def add_json(self, obj, title: str | None = None) -> None:
        """A pretty-printed JSON block (numpy values converted)."""
        if title:
            self._parts.append(f"<h4>{html.escape(str(title))}</h4>")
        text = json.dumps(jsonable(obj), indent=2)
        self._parts.append(f"<pre>{html.escape(text)}</pre>")

    def add_html(self, fragment: str) -> None:
        """Raw HTML, for callers that build their own markup (not escaped: trusted input only)."""
        self._parts.append(str(fragment))

    def to_html(self) -> str:
        title = html.escape(self.title)
        body = "\n".join(self._parts)
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{title}</title><style>{_STYLE}</style></head>\n<body>\n"
                f"<h1>{title}</h1>\n{body}\n</body></html>\n")

    def save(self, path) -> Path:
        """Write the report to ``path`` atomically; returns the path."""
        path = Path(path)
        write_text_atomic(path, self.to_html())
        return path


__all__ = ["HtmlReport"]
