"""res.save(path) and nbexplain.load(path): a result outlives its kernel, without its model."""

import json
import subprocess
import sys

import comm
import pytest
import torch
from ipywidgets.widgets.widget import _remove_buffers

import nbexplain
from nbexplain import Explainer, Explanation
from nbexplain.persist import FORMAT, FORMAT_VERSION

from conftest import fast_options, make_tiny

LAYERS = ["features.2", "features.5", "features.7"]
#: the tiny random model may give a class to the fill alone: the note says so, and is not the point here
pytestmark = pytest.mark.filterwarnings("ignore:explaining:UserWarning")
LABELS = ["circle", "square", "star", "ring"]


@pytest.fixture(scope="module")
def res():
    torch.manual_seed(1)
    image = torch.randn(3, 32, 32)
    return Explainer(make_tiny(), layers=LAYERS, labels=LABELS).explain(image, progress=False, live=False,
                                                                         **fast_options())


def test_the_loaded_result_shows_what_the_saved_one_shows(res, tmp_path):
    circuit = res.circuit  # read before saving: saved with it
    path = res.save(tmp_path / "run" / "r.nbx")
    assert path.endswith("r.nbx")
    back = nbexplain.load(path)
    assert isinstance(back, Explanation) and back.model is None
    assert torch.equal(back.mask, res.mask) and torch.equal(back.explanation, res.explanation)
    assert torch.equal(back.input, res.input) and back.target == res.target and back.labels == LABELS
    assert back.summary() == res.summary() and repr(back) == repr(res)
    assert back._repr_png_() == res._repr_png_()  # the figure, to the byte
    assert back.history == res.history and back.config == res.config and back.fill.kind == res.fill.kind
    assert back.necessary is not None and torch.equal(back.necessary.mask, res.necessary.mask)
    assert back.necessary.describe(back.class_name) == res.necessary.describe(res.class_name)
    assert back.checks == res.checks and back.views == res.views and back.normalization == res.normalization
    assert repr(back.circuit) == repr(circuit) and back.circuit.to_dict() == circuit.to_dict()
    with pytest.raises(ValueError, match="no model attached"):
        back.circuit.validate()
    with pytest.raises(ValueError, match="loaded from a file without the circuit of the original"):
        back.circuit_original  # noqa: B018 - not read before saving, so not saved


def test_loading_needs_neither_the_model_nor_its_class(res, tmp_path):
    path = res.save(tmp_path / "r.nbx")
    code = ("import sys, nbexplain; r = nbexplain.load(sys.argv[1]); "
            "sys.stdout.write(r.summary() + '|' + str(int(r.mask.sum())))")
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, check=True,
                         cwd=tmp_path).stdout  # a fresh interpreter: no conftest, no TinyNet
    assert out == f"{res.summary()}|{int(res.mask.sum())}"


def widget_state(w) -> dict:
    """The synced state, less references to other widgets (a layout's id differs per widget)."""
    return {k: v for k, v in w.get_state().items() if not (isinstance(v, str) and v.startswith("IPY_MODEL_"))}


def test_the_widget_of_the_loaded_result_is_the_same(res, tmp_path, monkeypatch):
    from nbexplain.widget import ExplanationWidget
    from nbexplain.widget import _widget as widget_module

    monkeypatch.setattr(comm, "create_comm", comm.DummyComm)
    back = nbexplain.load(res.save(tmp_path / "r.nbx", circuits=True))
    a, b = ExplanationWidget.from_result(res), ExplanationWidget.from_result(back)
    state_a, _, buffers_a = _remove_buffers(widget_state(a))
    state_b, _, buffers_b = _remove_buffers(widget_state(b))
    assert json.dumps(state_a, sort_keys=True) == json.dumps(state_b, sort_keys=True)
    assert buffers_a == buffers_b and state_b["circuit"]["nodes"] and state_b["circuit_original"]["nodes"]
    ask = {"type": "channel", "layer": LAYERS[1], "channel": 3, "source": "explanation", "request_id": 1}
    assert widget_module._SOURCES.get(a._serial).answer(ask) == widget_module._SOURCES.get(b._serial).answer(ask)


def test_a_file_without_circuits_or_activations(res, tmp_path):
    back = nbexplain.load(res.save(tmp_path / "r.nbx", circuits=False, activations=False))
    assert back.activations_original == {} and back.activations_explanation == {}
    with pytest.raises(ValueError, match="explain the image again"):
        back.circuit  # noqa: B018
    assert back.summary() == res.summary()


def test_a_result_without_its_necessary_half(tmp_path):
    torch.manual_seed(2)
    res = Explainer(make_tiny(), layers=LAYERS).explain(torch.randn(3, 32, 32), progress=False, necessary=False,
                                                          **fast_options())
    back = nbexplain.load(res.save(tmp_path / "r.nbx"))
    assert back.necessary is None and back.summary() == res.summary() and back._repr_png_() == res._repr_png_()


def test_an_image_suffix_still_saves_the_figure(res, tmp_path):
    assert res.save(tmp_path / "fig.png").endswith("fig.png")
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "fig.pdf").exists() is False and res.save(tmp_path / "fig.pdf")
    assert (tmp_path / "fig.pdf").read_bytes()[:4] == b"%PDF"


def test_the_file_is_plain_data_with_a_version(res, tmp_path):
    saved = torch.load(res.save(tmp_path / "r.nbx"), weights_only=True)
    assert saved["format"] == FORMAT and saved["format_version"] == FORMAT_VERSION
    assert saved["nbexplain"] == nbexplain.__version__ and saved["model_class"] == "TinyNet"


class Payload:
    """An arbitrary object: a pickle of it would run code on load."""


def test_other_files_and_unknown_formats_are_refused(res, tmp_path):
    saved = torch.load(res.save(tmp_path / "r.nbx"), weights_only=True)
    newer = tmp_path / "newer.nbx"
    torch.save({**saved, "format_version": FORMAT_VERSION + 1, "nbexplain": "9.0"}, newer)
    with pytest.raises(ValueError, match=r"nbexplain 9\.0 in explanation format 2.*upgrade"):
        nbexplain.load(newer)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an nbexplain explanation file"):
        nbexplain.load(tmp_path / "other.pt")
    torch.save({"format": "nbexplain-amortized-3"}, tmp_path / "am.pt")
    with pytest.raises(ValueError, match="AmortizedExplainer.load"):
        nbexplain.load(tmp_path / "am.pt")
    torch.save(Payload(), tmp_path / "pickled.pt")
    with pytest.raises(ValueError, match="does not load as plain data"):
        nbexplain.load(tmp_path / "pickled.pt")
    (tmp_path / "text.nbx").write_text("hello")
    with pytest.raises(ValueError, match="not an nbexplain explanation file"):
        nbexplain.load(tmp_path / "text.nbx")
    with pytest.raises(FileNotFoundError):
        nbexplain.load(tmp_path / "missing.nbx")
    assert "load" in nbexplain.__all__ and Explanation.load(tmp_path / "r.nbx").target == res.target
