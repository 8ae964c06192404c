"""The wheel a user installs: built from this tree, installed into a fresh virtual environment
with no network and no npm, it imports from its own files and explains a real photo.

The fresh environment borrows the already-installed *dependencies* (torch is gigabytes) through
a folder of links that leaves nbexplain itself out, so what runs is the wheel's copy and nothing
of the source tree.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

import nbexplain

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = ["widget.js", "widget.css", "gallery.js", "gallery.css"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
                   check=True, capture_output=True, text=True)
    (found,) = out.glob("nbexplain-*.whl")
    return found


def test_wheel_carries_the_built_widget_bundles_weights_and_licence(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for bundle in BUNDLES:
        packed = zipfile.ZipFile(wheel).read(f"nbexplain/widget/static/{bundle}")
        assert packed == (ROOT / "nbexplain/widget/static" / bundle).read_bytes()
    assert "nbexplain/py.typed" in names
    assert any(n.startswith("nbexplain/zoo/weights/") and n.endswith(".pt") for n in names)
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "js/", "notebooks/")) for n in names)
    assert wheel.name == f"nbexplain-{nbexplain.__version__}-py3-none-any.whl"


def _fresh_env_with_dependencies(where: Path) -> Path:
    """A new virtual environment that sees this environment's packages, all but nbexplain."""
    venv.EnvBuilder(with_pip=False).create(where)
    python = where / "bin" / "python"
    own = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                       text=True).strip())
    deps = where / "borrowed"
    deps.mkdir()
    for entry in Path(sysconfig.get_path("purelib")).iterdir():
        if not entry.name.lower().startswith(("nbexplain", "__editable__")):
            (deps / entry.name).symlink_to(entry)
    (own / "borrowed.pth").write_text(f"{deps}\n")
    return python


def test_wheel_installs_without_network_or_npm_and_explains_a_real_photo(wheel, tmp_path):
    python = _fresh_env_with_dependencies(tmp_path / "env")
    env = {**os.environ, "PATH": f"{python.parent}:/usr/bin:/bin", "PYTHONPATH": "", "PIP_NO_INDEX": "1"}
    env.pop("PYTHONHOME", None)
    # pip itself comes from the borrowed folder; --no-index: nothing may be downloaded or built.
    subprocess.run([str(python), "-m", "pip", "install", "--no-index", "--quiet", str(wheel)],
                   check=True, env=env, cwd=tmp_path, capture_output=True, text=True)
    where = subprocess.check_output([str(python), "-c", "import nbexplain, sys; print(nbexplain.__file__)"],
                                    env=env, cwd=tmp_path, text=True).strip()
    assert where.startswith(str(tmp_path / "env")) and "borrowed" not in where

    check = ("from nbexplain.widget._bundle import STATIC as _STATIC; "
             f"assert all((_STATIC / b).stat().st_size > 1000 for b in {BUNDLES!r}); print('bundles ok')")
    assert "bundles ok" in subprocess.check_output([str(python), "-c", check], env=env, cwd=tmp_path, text=True)

    run = subprocess.run([str(python), "-m", "nbexplain.demo", "--preset", "fast", "--out", str(tmp_path / "out")],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "coffee" in run.stdout.lower() or "espresso" in run.stdout.lower() or "cup" in run.stdout.lower()
    assert (tmp_path / "out" / "explanation.png").stat().st_size > 10_000
