"""Where a widget's built JavaScript and CSS live, and what shows when they were never built."""

from __future__ import annotations

import pathlib

STATIC = pathlib.Path(__file__).parent / "static"


def bundle(name: str, what: str) -> tuple[pathlib.Path | str, pathlib.Path | str]:
    """The ``_esm`` and ``_css`` of the widget built as ``static/<name>.js`` and ``.css``.

    In a source checkout where nobody ran the build, a stand-in module says what to run instead of
    the widget failing silently."""
    esm, css = STATIC / f"{name}.js", STATIC / f"{name}.css"
    missing = ("export default { render({ el }) {\n"
               f"  el.textContent = \"nbexplain: {what}'s JavaScript bundle is missing; run `node js/build.mjs`.\";\n"
               "} };\n")
    return (esm if esm.is_file() else missing), (css if css.is_file() else "")
