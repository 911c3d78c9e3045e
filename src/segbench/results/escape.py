"""Strings from outside (case file names, model and candidate names, machine fields, anything
read from a saved run) escaped for where they are printed: one helper per destination.

- :func:`terminal`: a terminal or a CI log (one line). Control characters (C0, DEL, C1: the
  ANSI escape ``ESC``, carriage return, line feed...), Unicode line separators and bidi
  overrides are shown as ``\\xNN``/``\\uNNNN``/``\\n``, so no name can move the cursor, colour
  the log, forge a line or reorder text; and ``::`` becomes ``:\\:``, so no name can start a
  GitHub Actions workflow command (``::error::``, ``::add-mask::``, ``::set-output``) in a log.
- :func:`markdown`: inline Markdown text, a table cell too (``report.md``, the comparison, the
  GitHub job summary): the control characters as above, and a backslash before every
  character that starts Markdown or HTML structure (``| [ ] < > & # ` * ! \\ ~ { } $``), so a
  name cannot split a table cell, open a heading, a link (``javascript:``), an image, an HTML
  tag or GitHub's ``$`` maths.
- :func:`markdown_code`: an inline code span that holds any text.

Each returns the text unchanged when it holds nothing to escape. Nothing here imports torch.
"""

from __future__ import annotations

import re

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_WORKFLOW = re.compile(r"(?<=:):")  # the second colon of every "::"
_MARKDOWN = re.compile(r"([\\`*\[\]<>&#|!~{}$])")


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def visible(text: object) -> str:
    """``text`` with its control and layout characters written out (``\\x1b``, ``\\n``)."""
    return _CONTROL.sub(_visible, str(text))


def terminal(text: object) -> str:
    """``text`` safe on one line of a terminal or a CI log (see the module)."""
    return _WORKFLOW.sub(r"\\:", visible(text))


def markdown(text: object) -> str:
    """``text`` safe as inline Markdown and in a table cell (see the module)."""
    return visible(_MARKDOWN.sub(r"\\\1", str(text)))


def markdown_code(text: object) -> str:
    """An inline code span of ``text`` (a file name): fenced by one more backtick than the
    longest run inside it, control characters written out (outside a table: a pipe inside a
    code span in a table cell would still end the cell)."""
    body = visible(text)
    longest = max((len(run) for run in re.findall("`+", body)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{fence}{pad}{body}{pad}{fence}"
