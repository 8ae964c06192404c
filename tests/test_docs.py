"""The documentation site builds with warnings as errors, and carries what a reader needs:
a page per task, every notebook rendered, and an API reference generated from the docstrings."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    # cwd: the notebook plugin keeps a cache in the working folder, not in the clone.
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                          "-d", str(out)], cwd=out.parent, env=env, capture_output=True, text=True)
    assert run.returncode == 0, f"the docs do not build strictly:\n{run.stderr[-4000:]}"
    return out


def test_a_page_per_task_and_the_reference_pages(site):
    for page in ["index.html", "getting-started/index.html", "method/index.html", "benchmarks/index.html",
                 "glossary/index.html", "api/index.html", "changelog/index.html"] + [
                 f"guide/{task}/index.html" for task in
                 ("explain", "compare", "circuits", "audit", "amortised", "transformers")]:
        assert (site / page).is_file(), page


def test_every_notebook_is_rendered_with_its_outputs(site):
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        html = (site / "notebooks" / nb.stem / "index.html").read_text()
        assert "data:image/png;base64" in html, f"{nb.name} renders without its figures"


def test_api_reference_documents_the_public_names_from_their_docstrings(site):
    html = (site / "api" / "index.html").read_text()
    import nbexplain

    for name in ["Explainer", "Explanation", "ExplainConfig", "compare", "Comparison", "audit", "Audit",
                 "AmortizedExplainer", "Attribution", "Necessary", "Circuit", "about"]:
        assert re.search(rf'id="nbexplain\.([\w.]*\.)?{name}"', html), f"{name} has no entry in the API reference"
    # The text comes from the docstring itself, not from a hand-written page.
    first_line = nbexplain.Explainer.explain.__doc__.strip().splitlines()[0]
    assert first_line.split("(")[0].strip() in html
