"""A report as a list of blocks, written out as Markdown or as one self-contained HTML page.

One structure feeds both formats, so they cannot drift apart. Text may hold `code` spans; all
else is escaped. The HTML has its CSS inline and its images as base64 data URIs: it loads
nothing from anywhere, so it can be mailed, archived or opened offline.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field

CODE = re.compile(r"`([^`]+)`")


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str
    kind: str = ""  # "", "warning" or "note": a highlighted box in HTML, a quote in Markdown


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    row_classes: list[str] = field(default_factory=list)  # CSS class per row (pass, fail, …)


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Image:
    name: str  # the PNG file written next to the Markdown
    caption: str
    png: bytes


Block = Heading | Para | Table | Bullets | Image

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 78rem; margin: 2rem auto; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; border-bottom: 2px solid #444; padding-bottom: .3rem; }
h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05rem; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .86rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.mark { white-space: nowrap; }
tr.pass td.mark, tr.verified td.mark { color: #176b2c; font-weight: 600; }
tr.fail td.mark, tr.contradicted td.mark { color: #b00020; font-weight: 600; }
tr.fail { background: #fff3f3; }
tr.contradicted { background: #fff3f3; }
code { background: #f4f4f4; padding: 0 .2rem; border-radius: 3px; font-size: .92em; }
.warning { border-left: 5px solid #d9822b; background: #fff7ec; padding: .6rem 1rem; }
.note { border-left: 5px solid #4a7bd0; background: #f2f6fd; padding: .6rem 1rem; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .88rem; color: #555; }
"""


def _inline_html(text: str) -> str:
    parts = CODE.split(text)
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


def _cell_md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(title: str, blocks: list[Block]) -> str:
    out = [f"# {title}", ""]
    for block in blocks:
        if isinstance(block, Heading):
            out += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Para):
            out += [("> " if block.kind else "") + block.text, ""]
        elif isinstance(block, Table):
            out.append("| " + " | ".join(map(_cell_md, block.headers)) + " |")
            out.append("|" + "---|" * len(block.headers))
            out += ["| " + " | ".join(map(_cell_md, row)) + " |" for row in block.rows]
            out.append("")
        elif isinstance(block, Bullets):
            out += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Image):
            out += [f"![{block.caption}]({block.name})", "", f"*{block.caption}*", ""]
    return "\n".join(out).rstrip() + "\n"


def to_html(title: str, blocks: list[Block]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_inline_html(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            cls = f' class="{block.kind}"' if block.kind else ""
            body.append(f"<p{cls}>{_inline_html(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in block.headers)
            rows = []
            for i, row in enumerate(block.rows):
                cls = block.row_classes[i] if i < len(block.row_classes) and block.row_classes[i] else ""
                cells = "".join(f'<td class="{"mark" if h in ("Result", "Status") else ""}">{_inline_html(c)}</td>' for h, c in zip(block.headers, row))
                rows.append(f'<tr class="{cls}">{cells}</tr>')
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Image):
            data = base64.b64encode(block.png).decode("ascii")
            alt = html.escape(block.caption, quote=True)
            body.append(f'<figure><img alt="{alt}" src="data:image/png;base64,{data}"><figcaption>{_inline_html(block.caption)}</figcaption></figure>')
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")
