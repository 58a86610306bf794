"""Figures in the docs come from a benchmark's JSON: each lives between two markers and is rewritten, never typed.

A block in a Markdown file::

    <!-- figures:soak -->
    ...generated text...
    <!-- /figures:soak -->

``replace_block(path, "soak", text)`` rewrites what is between the markers; a test renders every
block from the committed JSON and compares (tests/bench/test_doc_figures.py).
"""

from __future__ import annotations

import re
from pathlib import Path


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- figures:{re.escape(name)} -->\n)(.*?)(<!-- /figures:{re.escape(name)} -->)", re.DOTALL)


def read_block(path: Path, name: str) -> str:
    match = _pattern(name).search(path.read_text())
    if match is None:
        raise ValueError(f"{path} has no figures:{name} block")
    return match.group(2)


def replace_block(path: Path, name: str, text: str) -> None:
    """Put ``text`` (ending with a newline) between the ``figures:name`` markers of ``path``."""
    source = path.read_text()
    if _pattern(name).search(source) is None:
        raise ValueError(f"{path} has no figures:{name} block")
    path.write_text(_pattern(name).sub(lambda m: m.group(1) + text + m.group(3), source, count=1))
