"""The report model and its two renderers: HTML (a Jinja2 template, autoescaped) and Markdown.

A report is a list of sections; a section holds blocks (paragraphs, tables, images, lists,
preformatted text). Every section is in the HTML report; the ones marked `summary` are also
in report.md, the summary for an architecture decision record, where images are left out and
a table may show fewer rows or columns (`Table.summary`). Paragraph text is written once in a
small inline markup that both renderers read: `code`, **bold**, *italic*. The HTML renderer
escapes every value before it adds tags; nothing is concatenated into HTML by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
import numpy as np
import pandas as pd

TEMPLATES = Path(__file__).with_name("templates")


@dataclass
class Para:
    text: str
    tone: str = ""  # "ok" or "bad": a verdict


@dataclass
class Table:
    frame: pd.DataFrame
    digits: int = 1
    summary: pd.DataFrame | None = None  # what report.md shows (default: the same frame)


@dataclass
class Image:
    alt: str
    src: str  # a data: URI


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Pre:
    text: str


Block = Para | Table | Image | Bullets | Pre


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2
    summary: bool = False


@dataclass
class Report:
    title: str
    sections: list[Section]


# --- inline markup -------------------------------------------------------------------------

_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*|\*([^*]+)\*")


def inline_html(text: str) -> markupsafe.Markup:
    """Escape `text`, then turn `code`, **bold** and *italic* into tags."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(markupsafe.escape(text[pos : m.start()]))
        code, bold, italic = m.groups()
        if code is not None:
            out.append(markupsafe.Markup("<code>{}</code>").format(code))
        elif bold is not None:
            out.append(markupsafe.Markup("<b>{}</b>").format(bold))
        else:
            out.append(markupsafe.Markup("<i>{}</i>").format(italic))
        pos = m.end()
    out.append(markupsafe.escape(text[pos:]))
    return markupsafe.Markup("").join(out)


def cell(value: Any, digits: int = 1) -> str:
    """One table cell as text: floats with `digits`, missing values as an en dash."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, float | np.floating):
        return f"{value:.{digits}f}"
    return str(value)


def rows(table: Table, frame: pd.DataFrame | None = None) -> tuple[list[str], list[list[str]], list[bool]]:
    """Column names, cells as text, and which columns hold text (set left in HTML)."""
    f = table.frame if frame is None else frame
    body = [[cell(v, table.digits) for v in r] for r in f.itertuples(index=False)]
    text = [not pd.api.types.is_numeric_dtype(f[c]) or pd.api.types.is_bool_dtype(f[c]) for c in f.columns]
    return [str(c) for c in f.columns], body, text


# --- renderers -----------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["inline"] = inline_html
    env.tests["instance_of"] = isinstance
    env.globals.update(rows=rows, Para=Para, Table=Table, Image=Image, Bullets=Bullets, Pre=Pre)
    return env


def to_html(report: Report) -> str:
    return _environment().get_template("report.html.j2").render(report=report)


def _md_table(table: Table) -> str:
    frame = table.frame if table.summary is None else table.summary
    if frame.empty:
        return "_none_\n"
    cols, body, _ = rows(table, frame)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in body]
    return "\n".join(lines) + "\n"


def to_markdown(report: Report) -> str:
    """The summary sections as Markdown (images left out)."""
    lines = [f"# {report.title}", ""]
    for s in report.sections:
        if not s.summary:
            continue
        if s.title:
            lines += ["#" * s.level + " " + s.title, ""]
        for b in s.blocks:
            if isinstance(b, Para):
                lines += [b.text, ""]
            elif isinstance(b, Table):
                lines += [_md_table(b)]
            elif isinstance(b, Bullets):
                lines += [*(f"- {item}" for item in b.items), ""]
            elif isinstance(b, Pre):
                lines += ["```", b.text, "```", ""]
    return "\n".join(lines)
