"""The tutorial notebooks' stored outputs come from the code as it is now.

Each notebook prints ``nbexplain.about()`` first; its stored line must name this version and this
method fingerprint. A change to the method (code, defaults or bundled weights) fails here until
every notebook is executed again, so its figures and prose cannot drift from the code:

    .venv/bin/jupyter nbconvert --to notebook --execute --inplace notebooks/*.ipynb
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import nbexplain
from nbexplain.fingerprint import _code_only

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
ABOUT = re.compile(r"nbexplain (\S+) · method ([0-9a-f]{12})")


def _stored_about(path: Path) -> tuple[str, str] | None:
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    for output in cells[0].get("outputs", []) if cells else []:
        found = ABOUT.search("".join(output.get("text", "")))
        if found:
            return found.group(1), found.group(2)
    return None


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 9


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_outputs_come_from_this_code(path):
    stored = _stored_about(path)
    assert stored is not None, (f"{path.name}: its first code cell must print nbexplain.about() and be executed "
                                "so that its outputs say what produced them")
    version, method = stored
    assert (version, method) == (nbexplain.__version__, nbexplain.method_fingerprint()), (
        f"{path.name} was executed with nbexplain {version}, method {method}; the code now is "
        f"{nbexplain.__version__}, method {nbexplain.method_fingerprint()}. Execute it again "
        "(jupyter nbconvert --to notebook --execute --inplace) and update its prose from the new outputs.")


def test_fingerprint_ignores_prose_but_not_code():
    code = 'def f(x):\n    """Say what f does."""\n    # why\n\n    return x + 1  # trailing\n'
    assert _code_only(code) == _code_only(code.replace("Say what f does.", "Something else.").replace("# why", "# ?"))
    assert _code_only(code) != _code_only(code.replace("x + 1", "x + 2"))
    assert "Say what" not in _code_only(code) and "#" not in _code_only(code)
