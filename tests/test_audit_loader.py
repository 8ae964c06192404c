"""audit() takes a torch DataLoader: its batches unbatched in order, ids stable, shuffling refused."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, TensorDataset

from conftest import make_tiny
from nbexplain.audits import data as data_mod
from nbexplain.audits import pipeline as audit_mod
from nbexplain.audits import rows as rows_mod
from nbexplain.config import ExplainConfig

TINY = ExplainConfig.preset("fast", steps=4, min_steps=4, warmup=2, mask_resolution=16, unet_width=4,
                            robustness_draws=0, retry_area=None)


def images_and_labels(n: int = 7):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 32, 32, generator=g), torch.arange(n) % 3


def test_batches_of_images_and_labels_are_unbatched_in_order():
    x, y = images_and_labels(7)
    d = data_mod.as_audit_data(DataLoader(TensorDataset(x, y), batch_size=3))  # batches of 3, 3 and 1
    assert len(d) == 7 and d.source == "DataLoader(TensorDataset)"
    for i in range(7):
        assert torch.equal(d.image(i), x[i]) and d.label(i) == int(y[i]) and d.key(i) == str(i)


def test_batches_of_images_alone_have_no_labels():
    x, _ = images_and_labels(5)

    class Bare(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return x[i]

    for ds in (Bare(), TensorDataset(x)):
        d = data_mod.as_audit_data(DataLoader(ds, batch_size=2))
        assert len(d) == 5 and d.label(4) is None and torch.equal(d.image(3), x[3])


def test_a_custom_collate_is_applied_to_the_whole_batch():
    x, y = images_and_labels(5)
    seen = []

    def centre(items):  # a batch-level step: subtract the batch's mean image
        seen.append(len(items))
        images = torch.stack([a for a, _ in items])
        return images - images.mean(0, keepdim=True), torch.stack([b for _, b in items])

    d = data_mod.as_audit_data(DataLoader(TensorDataset(x, y), batch_size=2, collate_fn=centre))
    batches = list(DataLoader(TensorDataset(x, y), batch_size=2, collate_fn=centre))
    seen.clear()
    assert torch.allclose(d.image(3), batches[1][0][1]) and d.label(3) == int(y[3])
    assert d.label(2) == int(y[2]) and seen == [2]  # the batch is collated once for images 2 and 3
    assert torch.allclose(d.image(4), batches[2][0][0])


def test_mapping_batches_and_a_sampler_order_give_dataset_keys():
    x, y = images_and_labels(6)

    class Dicts(Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return {"pixel_values": x[i], "label": int(y[i])}

    order = [5, 3, 1, 0, 2, 4]
    loader = DataLoader(Dicts(), batch_size=4, sampler=order)
    d = data_mod.as_audit_data(loader)
    assert [d.key(i) for i in range(6)] == [str(j) for j in order]
    assert all(torch.equal(d.image(i), x[j]) and d.label(i) == int(y[j]) for i, j in enumerate(order))


def test_an_iterable_dataset_is_read_once_in_its_order():
    x, y = images_and_labels(5)

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(zip(x, y))

    d = data_mod.as_audit_data(DataLoader(Stream(), batch_size=2))
    assert len(d) == 5 and [d.key(i) for i in range(5)] == list(map(str, range(5)))
    assert torch.equal(d.image(4), x[4]) and d.label(4) == int(y[4])


def test_without_auto_batching_each_item_is_one_image():
    x, y = images_and_labels(3)
    d = data_mod.as_audit_data(DataLoader(TensorDataset(x, y), batch_size=None))
    assert len(d) == 3 and torch.equal(d.image(2), x[2]) and d.label(2) == int(y[2])


def test_a_shuffling_loader_is_refused():
    x, y = images_and_labels(4)
    with pytest.raises(ValueError, match="shuffle=False"):
        data_mod.as_audit_data(DataLoader(TensorDataset(x, y), batch_size=2, shuffle=True))

    class Drawn(Sampler):  # a random order under a name the check does not know
        def __len__(self):
            return 4

        def __iter__(self):
            return iter(torch.randperm(4).tolist())

    torch.manual_seed(0)
    with pytest.raises(ValueError, match="differs between two passes"):
        data_mod.as_audit_data(DataLoader(TensorDataset(x, y), batch_size=2, sampler=Drawn()))


def test_labels_that_are_not_one_class_per_image_are_ignored():
    x, _ = images_and_labels(4)
    masks = torch.zeros(4, 32, 32)
    d = data_mod.as_audit_data(DataLoader(TensorDataset(x, masks), batch_size=2))
    assert d.label(1) is None and torch.equal(d.image(1), x[1])


def test_an_audit_of_a_loader_resumes_under_another_batch_size(tmp_path, monkeypatch):
    x, y = images_and_labels(4)
    explained: list[int] = []
    original = rows_mod.AuditWorker.rows

    def rows(self, ids):
        explained.extend(int(i) for i in ids)
        return original(self, ids)

    monkeypatch.setattr(rows_mod.AuditWorker, "rows", rows)
    model, out = make_tiny(), tmp_path / "run"
    options = dict(config=TINY, circuits=False, chunk=2, progress=False, gallery=False, target="label")
    first = audit_mod.audit(model, DataLoader(TensorDataset(x, y), batch_size=3), out=out, **options)
    assert sorted(explained) == [0, 1, 2, 3]
    assert first.table.sort_values("id")["label"].tolist() == y.tolist()
    assert first.table.sort_values("id")["target"].tolist() == y.tolist()
    explained.clear()
    again = audit_mod.audit(model, DataLoader(TensorDataset(x, y), batch_size=2), out=out, **options)
    assert explained == [] and len(again) == 4  # the same images under the same ids: nothing to redo
    same = audit_mod.audit(model, TensorDataset(x, y), out=tmp_path / "direct", **options)
    for i in range(4):
        assert (same.mask(i) == first.mask(i)).all()  # the loader's images are the dataset's
