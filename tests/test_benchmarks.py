"""The benchmark scripts run end to end and print their tables (one scene, so it stays quick)."""

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quality_benchmark_prints_one_row_per_method(capsys):
    assert load("bench_quality").main(["--n", "1", "--methods", "gradcam,occlusion", "--amortized"]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows == ["method", "gradcam", "occlusion", "nbexplain amortised, one pass", "nbexplain amortised, refine=10"]


def test_quality_benchmark_refuses_an_amortised_row_for_other_weights():
    with pytest.raises(SystemExit, match="--amortized"):
        load("bench_quality").main(["--n", "1", "--amortized", "--weights", "x.pt"])


def test_speed_benchmark_prints_ratios_to_the_default_preset(capsys):
    assert load("bench_speed").main(["--models", "honest", "--n", "1", "--skip-extremal", "--batches", "2"]) == 0
    out = capsys.readouterr().out
    for method in ("nbexplain fast", "nbexplain default", "gradcam (captum)", "occlusion (captum)",
                   "nbexplain amortised", "nbexplain default, batch of 2"):
        assert f"| {method} " in out, method
    default_row = next(line for line in out.splitlines() if "| nbexplain default " in line)
    assert "|      1.00 |" in default_row


def test_zoo_benchmark_prints_accuracy_explanation_and_circuit_tables(capsys):
    args = ["--n", "1", "--n-accuracy", "20", "--preset", "fast", "--repeats", "2"]
    assert load("bench_zoo").main(args) == 0
    out = capsys.readouterr().out
    tables = [line for line in out.splitlines() if line.startswith("| model ")]
    assert len(tables) == 3
    rows = [line.split("|")[1:4] for line in out.splitlines() if line.startswith("| shortcut ")]
    assert [r[0].strip() for r in rows] == ["shortcut"] * 5  # one accuracy row, two explanation, two circuit rows
    cue_row = next(line for line in out.splitlines() if line.startswith("| shortcut | triangles with cue | 1 |"))
    assert cue_row.split("|")[7].strip().endswith("%")  # the cue column is filled for scenes with the cue


def test_circuit_benchmark_prints_one_row_per_model_and_family(capsys):
    assert load("bench_circuits").main(["--skip", "lite,resnet,vit", "--from-activations", "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|")[1:] for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0][0].strip() == "model" and len(rows) == 1 + 8
    assert all("refused" not in r[2] and r[4].strip() == "100%" for r in rows[1:])  # decision-sized: it keeps it
    # The zoo's ViT: a circuit of heads and MLP units, read on an explanation.
    assert load("bench_circuits").main(["--skip", "lite,resnet,families", "--n-scenes", "1", "--repeats", "2"]) == 0
    rows = [line.split("|")[1:] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and "---" not in line]
    assert len(rows) == 2 and "ViT" in rows[1][0] and rows[1][4].strip() == "100%"


def test_grid_benchmark_prints_the_pointing_game_and_the_photo_table(capsys):
    args = ["--grids", "1", "--photos", "1", "--methods", "gradcam,nbexplain-fast", "--options", "steps=3,min_steps=3"]
    assert load("bench_grid").main(args) == 0
    out = capsys.readouterr().out
    assert "Grid pointing game" in out and "| gradcam |" in out and "| nbexplain-fast |" in out
    assert "Single photos" in out and out.count("| cat |") == 2  # one row per method
