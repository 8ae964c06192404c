"""What produced a result: the version and a fingerprint of the method's code, settings and weights.

Every tutorial notebook prints ``about`` in its first cell, and a test compares the stored
line with the installed package, so a change to the method fails CI until the notebooks are
executed again. An audit's run folder records the same fingerprint and refuses to mix rows that
another method produced.

The fingerprint reads the code that decides results (the optimiser, losses, fills, layer
choice, circuits, baselines, metrics, audits, datasets and bundled models) with docstrings,
comments and blank lines removed, so editing prose does not change it; the display, the widget
and the command line are left out.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import io
import tokenize
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
#: Folders and modules whose code decides results (relative to the package).
METHOD_PARTS = ("core", "circuits", "audits", "baselines", "metrics", "datasets", "zoo", "config.py", "explainer.py",
                "amortized.py", "compare.py", "attribution.py", "explanation.py")


def _code_only(source: str) -> str:
    """Source without docstrings, comments and blank lines: what runs, not what is said about it."""
    tree = ast.parse(source)
    prose: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            prose.update(range(body[0].lineno, body[0].end_lineno + 1))
    lines = source.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            row, col = tok.start
            lines[row - 1] = lines[row - 1][:col]
    kept = (line.rstrip() for i, line in enumerate(lines, 1) if i not in prose)
    return "\n".join(line for line in kept if line.strip())


def _method_files() -> list[Path]:
    files: list[Path] = []
    for part in METHOD_PARTS:
        path = PACKAGE / part
        files += sorted(p for p in path.rglob("*") if p.suffix in (".py", ".pt")) if path.is_dir() else [path]
    return files


@functools.lru_cache(maxsize=1)
def method_fingerprint() -> str:
    """A short hash of the code, default settings and bundled weights that decide every result."""
    from .config import ExplainConfig

    h = hashlib.sha256()
    for path in _method_files():
        h.update(str(path.relative_to(PACKAGE)).encode())
        data = path.read_bytes()
        h.update(_code_only(data.decode()).encode() if path.suffix == ".py" else data)
    h.update(repr(ExplainConfig()).encode())
    return h.hexdigest()[:12]


def about() -> str:
    """One line naming what produces results here: ``nbexplain 0.2.0 · method 1a2b3c4d5e6f · torch 2.x``."""
    import torch

    from . import __version__

    return f"nbexplain {__version__} · method {method_fingerprint()} · torch {torch.__version__}"
