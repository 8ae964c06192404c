"""The static figure's training curves: honest axes, no per-term rescaling."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nbexplain.display import explanation_figure, figure_png


def fake_result(history, **kw):
    image = np.full((8, 8, 3), 0.5)
    values = dict(
        image=lambda: image, explanation_image=lambda: image, mask=torch.ones(8, 8), target_name="cat",
        prob_original=0.9, prob_explanation=0.7, area=0.25, label_kept=True, necessary=None,
        interrupted=False, history=history,
    )
    return SimpleNamespace(**{**values, **kw})


HISTORY = {
    "kl": [0.5, 0.4, 0.3, 0.2],
    "area": [0.6, 0.4, 0.3, 0.3],
    "binarization": [0.1, 0.01, 0.0, 1e-4],  # exactly 0 at one step
    "robustness": [0.0, 0.0, 0.0, 0.0],  # no backgrounds: 0 throughout
    "total": [2.0, 1.5, 1.2, 1.1],
    "prob": [0.3, 0.5, 0.65, 0.7],
    "mask_area": [0.6, 0.4, 0.3, 0.3],
}


def curves(fig):
    top = next(ax for ax in fig.axes if ax.get_title() == "area kept and p(target)")
    bottom = next(ax for ax in fig.axes if ax.get_title().startswith("loss, log scale"))
    return top, bottom


def line(ax, label):
    return next(ln for ln in ax.get_lines() if ln.get_label() == label)


def test_area_and_prob_are_drawn_as_they_are_on_a_fixed_unit_axis():
    top, _ = curves(explanation_figure(fake_result(HISTORY)))
    assert top.get_ylim() == (0.0, 1.0)
    np.testing.assert_allclose(line(top, "area kept").get_ydata(), HISTORY["mask_area"])
    np.testing.assert_allclose(line(top, "p(target | explanation)").get_ydata(), HISTORY["prob"])
    np.testing.assert_allclose(line(top, "p(target | explanation)").get_xdata(), [1, 2, 3, 4])
    assert line(top, "p(target | x) = 0.90").get_ydata()[0] == pytest.approx(0.9)
    labels = [t.get_text() for t in top.get_legend().get_texts()]
    assert "the result (best mask)" in labels


def test_losses_are_on_a_log_axis_unscaled_and_values_at_zero_are_left_out_and_said():
    _, bottom = curves(explanation_figure(fake_result(HISTORY)))
    assert bottom.get_yscale() == "log"
    np.testing.assert_allclose(line(bottom, "total").get_ydata(), HISTORY["total"])  # not rescaled
    np.testing.assert_allclose(line(bottom, "kl").get_ydata(), HISTORY["kl"])
    binar = line(bottom, "binarization *").get_ydata()
    assert np.isnan(binar[2]) and binar[3] == pytest.approx(1e-4)
    legend = bottom.get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[0] == "total"
    assert "robustness: \u2264 0 throughout" in labels
    assert "not drawn" in legend.get_title().get_text()
    lo, hi = bottom.get_ylim()
    assert lo < 1e-4 and hi > 2.0


def test_old_histories_without_measurements_and_empty_ones_still_draw():
    for history in ({"kl": [0.3, 0.2]}, {}, {"total": [1.0]}):
        fig = explanation_figure(fake_result(history))
        assert figure_png(fig)[:4] == b"\x89PNG"
    assert len(explanation_figure(fake_result(HISTORY), show_losses=False).axes) == 3
