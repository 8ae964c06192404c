"""The ImageNet-W watermark on real photos, and the necessary evidence of a decision it tips."""

import pytest
import torch

from nbexplain import Explainer
from nbexplain.core.fills import surroundings
from nbexplain.datasets.watermark import add_watermark, photo_views, watermark_strokes
from nbexplain.zoo.pretrained import load_efficientnet_lite0


@pytest.fixture(scope="module")
def zoo():
    return load_efficientnet_lite0()


def test_views_strokes_and_the_published_transform():
    views = photo_views("rocket")
    assert len(views) == 8 and len({name for name, _ in views}) == 8
    for _, v in views:
        assert v.shape == (3, 224, 224) and 0 <= float(v.min()) and float(v.max()) <= 1
    strokes, near = watermark_strokes(224), watermark_strokes(224, within=3)
    assert bool((near | strokes).eq(near).all()) and near.sum() > strokes.sum() > 0
    rows = strokes.any(1).nonzero()[:, 0]
    assert 0.35 * 224 <= int(rows.min()) and int(rows.max()) <= 0.7 * 224  # the text sits at 40 % of the height
    marked = add_watermark(views[0][1])
    # The transform goes through 8-bit pixels (up to half a level per channel everywhere); beyond that it only
    # touches pixels on its strokes.
    changed = (marked - views[0][1]).abs().amax(0) > 1.5 / 255
    assert changed.any() and float((changed & ~near).sum()) == 0
    with pytest.raises(ValueError, match="square"):
        add_watermark(torch.zeros(3, 10, 20))


def test_the_watermark_tips_the_rocket_and_its_necessary_region_is_checked(zoo):
    clean = zoo.normalize(photo_views("rocket")[0][1])
    marked = zoo.normalize(add_watermark(photo_views("rocket")[0][1]))
    with torch.no_grad():
        before, after = int(zoo.model(clean[None]).argmax()), int(zoo.model(marked[None]).argmax())
    assert before != after  # "missile" becomes "candle"
    res = Explainer(zoo.model, preprocess=zoo.preprocess, labels=zoo.labels).explain(
        marked, config="fast", progress=False, live=False)
    nec = res.necessary
    assert nec.found and 0 < nec.area <= 0.3 and nec.turns_into in nec.foils
    with torch.no_grad():
        removed = surroundings(marked[None], nec.mask[None, None])
        assert int(zoo.model(removed).argmax()) == nec.turns_into != after
