"""Progress and information go through ``logging`` (silent unless the user asks), never ``print``."""

import ast
import logging
from pathlib import Path

import pytest
import torch

from conftest import make_tiny
from nbexplain import Explainer
from nbexplain.audits import pipeline as audit_mod
from nbexplain.config import ExplainConfig

ROOT = Path(__file__).resolve().parents[1] / "nbexplain"
#: the command line and the demo talk to a terminal: their output is the point
PRINTING_ALLOWED = {"__main__.py", "demo.py"}
TINY = ExplainConfig.preset("fast", steps=4, min_steps=4, warmup=2, mask_resolution=16, unet_width=4,
                            robustness_draws=0, retry_area=None)


def test_the_library_calls_no_print():
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        if path.name in PRINTING_ALLOWED and path.parent == ROOT:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


def test_an_audit_logs_where_it_writes_and_what_it_resumes(tmp_path, caplog, capsys):
    images = [torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(k)) for k in range(2)]
    options = dict(config=TINY, circuits=False, chunk=2, progress=False, gallery=False)
    with caplog.at_level(logging.INFO, logger="nbexplain"):
        audit_mod.audit(make_tiny(), images, **options)
        assert "temporary folder" in caplog.text and "2 images" in caplog.text
        caplog.clear()
        audit_mod.audit(make_tiny(), images, out=tmp_path / "run", **options)
        assert "resuming" not in caplog.text
        audit_mod.audit(make_tiny(), images, out=tmp_path / "run", **options)
    assert "resuming the audit" in caplog.text and "2 of 2 images already explained, 0 to go" in caplog.text
    assert all(r.name.startswith("nbexplain.audits") for r in caplog.records)
    assert capsys.readouterr().out == ""


def test_the_layers_an_explainer_taps_are_logged_at_debug(caplog):
    with caplog.at_level(logging.DEBUG, logger="nbexplain.explainer"):
        Explainer(make_tiny()).use_plan((32, 32))
    assert any(r.levelno == logging.DEBUG and "TinyNet at 32x32: tapping" in r.getMessage() for r in caplog.records)


def test_the_pretrained_loaders_own_line_goes_to_the_log(caplog, capsys):
    from nbexplain.zoo.pretrained import load_efficientnet_lite0

    with caplog.at_level(logging.DEBUG, logger="nbexplain.zoo"):
        load_efficientnet_lite0()
    assert capsys.readouterr().out == ""
    assert any("Loaded pretrained weights" in r.getMessage() for r in caplog.records)
