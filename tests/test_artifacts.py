"""Artifacts across classes (``Audit.artifacts``): a pattern many images carry at one place, found by
where their necessary evidence gathers and what lies there, and tested by removing and pasting it."""

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from nbexplain.audits.artifacts import find_artifacts

SIDE = 32
STAMP = torch.zeros(SIDE, SIDE, dtype=torch.bool)
STAMP[4:13, 23] = True  # a thin cross near the top-right corner, like a tag laid over the photo
STAMP[8, 19:28] = True


class StampNet(nn.Module):
    """Decides by the image's dominant colour (classes 0-2) unless the stamp is there (class 3): the
    stamp is detected as its pixels brighter than their neighbourhood, so filling them in from their
    surroundings takes it away."""

    def forward(self, x):
        grey = x.mean(1, keepdim=True)
        local = F.avg_pool2d(grey, 7, 1, 3, count_include_pad=False)
        stamp = ((grey - local)[:, 0] * STAMP).sum((1, 2)) / STAMP.sum()
        colour = x.mean((2, 3))
        return torch.cat([colour, 8 * (stamp - 0.15)[:, None] + colour.max(1, keepdim=True).values], 1)


class Worker:
    def __init__(self, images, model):
        self.images, self.model = images, model

    def model_input(self, i):
        return self.images[i:i + 1]

    @torch.no_grad()
    def predict(self, x):
        return self.model(x).argmax(1)


def photos(n, seed):
    """Smooth random 'photos': a few blobs of colour, upsampled, with a little grain."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=gen)
    return F.interpolate(coarse, size=(SIDE, SIDE), mode="bicubic", align_corners=False) + \
        0.02 * torch.randn(n, 3, SIDE, SIDE, generator=gen)


def audit_of(images, carriers, model):
    """A table and necessary regions as an audit would have them: the stamp's pixels for the images
    it decides, a small random patch for the others."""
    gen = np.random.default_rng(0)
    pred = model(images).argmax(1)
    regions = {}
    for i in range(len(images)):
        if i in carriers and int(pred[i]) == 3:
            regions[i] = STAMP.numpy().copy()
        else:
            m = np.zeros((SIDE, SIDE), bool)
            r, c = gen.integers(0, SIDE - 3, 2)
            m[r:r + 3, c:c + 3] = True
            regions[i] = m
    table = pd.DataFrame({"necessary_found": True, "target": pred.numpy(), "error": None}, index=range(len(images)))
    return table, regions.__getitem__


def test_a_stamp_that_tips_images_of_every_class_is_one_artifact_and_its_footprint_is_the_stamp():
    model = StampNet()
    images = photos(40, seed=1)
    carriers = set(range(0, 40, 2))
    for i in carriers:
        images[i, :, STAMP] += 0.5  # laid over the photo, as a semi-transparent overlay
    table, necessary_of = audit_of(images, carriers, model)
    decided = {i for i in carriers if int(table.loc[i, "target"]) == 3}
    assert len(decided) == len(carriers)  # the stamp decides every image that carries it

    top = find_artifacts(table, necessary_of, Worker(images, model))[0]
    assert set(top.carriers.tolist()) == carriers
    assert set(top.indices.tolist()) == decided
    footprint = torch.from_numpy(top.footprint)
    near_stamp = F.max_pool2d(STAMP.float()[None, None], 7, 1, 3)[0, 0].bool()  # within 3 px, as the benchmark counts
    assert (footprint & STAMP).sum() >= 0.8 * STAMP.sum()  # it covers the stamp
    assert (footprint & near_stamp).sum() >= 0.8 * footprint.sum()  # and little else
    assert top.removal == 1.0 and top.removal_moved < 0.5
    assert top.paste > 0.5 and top.suspicion > 0.3
    assert "removing it changes 20 decisions" in repr(top)


def test_images_without_a_shared_pattern_give_no_artifact_to_test():
    model = StampNet()
    images = photos(40, seed=2)
    table, necessary_of = audit_of(images, set(), model)
    artifacts = find_artifacts(table, necessary_of, Worker(images, model))
    assert all(a.area == 0 and a.suspicion == 0 and a.size == 0 for a in artifacts)
    assert all("no pattern they share" in repr(a) for a in artifacts)
