"""Group the images of one class that were decided by the same evidence (spectral clustering).

Each explanation becomes a vector: where its kept pixels lie in the frame (the mask pooled to a
``grid x grid`` map, spread over neighbouring cells, square-rooted so that a few pixels count)
and, if read, which circuit channels carry it. Both blocks are unit vectors of non-negative
entries, so the dot product of two rows is a similarity in [0, 1] with a meaning (see
``knn_graph``). The vectors of one class are joined to their nearest neighbours in a sparse
graph (built in blocks: no N x N matrix is ever held); the number of groups is the largest gap
among the smallest eigenvalues of its normalised Laplacian, as in SpRAy (Lapuschkin et al.,
2019); the groups are k-means on the rows of its spectral embedding, and groups that keep the
same evidence are joined again (``merge_alike``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla
import torch

FEATURES = ("mask", "channels")
_DENSE_BELOW = 64  # a graph this small is decomposed densely (cheap, and eigsh needs n > k + 1)


def mask_features(masks: np.ndarray, grid: int = 16) -> np.ndarray:
    """Masks [N, H, W] (binary, or the share of each cell kept) -> where their pixels lie,
    [N, grid * grid], unit length."""
    t = torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32))[:, None]
    pooled = torch.nn.functional.adaptive_avg_pool2d(t, grid)
    # Spread each cell over its neighbours (a [1, 2, 1] kernel): evidence a few pixels apart, on
    # either side of a cell border, is the same evidence.
    k = torch.tensor([1.0, 2.0, 1.0])
    kernel = (k[:, None] * k[None, :] / 16).view(1, 1, 3, 3)
    spread = torch.nn.functional.conv2d(pooled, kernel, padding=1)
    return _unit_rows(spread.flatten(1).sqrt().numpy())


def channel_features(channel_lists: list[list[str]]) -> np.ndarray:
    """Circuit channel sets -> indicator vectors, unit length (dot product = Ochiai overlap)."""
    vocab = {c: k for k, c in enumerate(sorted({c for chans in channel_lists for c in chans}))}
    out = np.zeros((len(channel_lists), max(1, len(vocab))), dtype=np.float32)
    for i, chans in enumerate(channel_lists):
        out[i, [vocab[c] for c in chans]] = 1.0
    return _unit_rows(out)


def combine(parts: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Concatenate unit-length feature blocks; dot products become their weighted mean."""
    total = sum(weights)
    return np.concatenate([p * np.sqrt(w / total) for p, w in zip(parts, weights)], axis=1)


def knn_graph(features: np.ndarray, k: int = 10, block: int = 1024) -> sp.csr_matrix:
    """Symmetric sparse graph joining each row to the ``k`` rows most similar to it.

    The weight of an edge is the rows' dot product: for the blocks of this module, the weighted
    mean of how much two explanations' evidence coincides (the Bhattacharyya coefficient of where
    their pixels lie; the Ochiai overlap of their channel sets). It has an absolute scale: a
    locally scaled kernel makes the inside of any tight cloud look like structure."""
    n = len(features)
    k = max(1, min(k, n - 1))
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    idx = np.empty((n, k), dtype=np.int64)
    sim = np.empty((n, k), dtype=np.float32)
    for s in range(0, n, block):  # one block of rows against all: memory N x block, never N x N
        d = x[s:s + block] @ x.T
        d[torch.arange(d.shape[0]), torch.arange(s, s + d.shape[0])] = -float("inf")
        top = d.topk(k, dim=1)
        idx[s:s + block], sim[s:s + block] = top.indices.numpy(), top.values.numpy()
    rows = np.repeat(np.arange(n), k)
    w = np.clip(sim.ravel(), 1e-6, 1.0)  # a tiny floor keeps every row joined to its neighbours
    a = sp.csr_matrix((w, (rows, idx.ravel())), shape=(n, n))
    return a.maximum(a.T).tocsr()


def spectral_groups(affinity: sp.csr_matrix, max_groups: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Group labels [N] and the smallest Laplacian eigenvalues used to choose their number."""
    n = affinity.shape[0]
    if n < 4:
        return np.zeros(n, dtype=np.int64), np.zeros(1)
    deg = np.asarray(affinity.sum(1)).ravel()
    d = sp.diags(1.0 / np.sqrt(np.maximum(deg, 1e-12)))
    m = (d @ affinity @ d).tocsr()  # its eigenvalues are 1 - those of the normalised Laplacian
    want = min(max_groups + 1, n - 1)
    if n < _DENSE_BELOW:
        vals, vecs = np.linalg.eigh(m.toarray())
        vals, vecs = vals[::-1][:want], vecs[:, ::-1][:, :want]
    else:
        rng = np.random.default_rng(seed)
        vals, vecs = sla.eigsh(m, k=want, which="LA", v0=rng.standard_normal(n), tol=1e-6)
        order = np.argsort(-vals)
        vals, vecs = vals[order], vecs[:, order]
    lam = np.clip(1.0 - vals, 0.0, 2.0)
    gaps = np.diff(lam)[:max_groups]
    k = int(np.argmax(gaps)) + 1 if len(gaps) else 1
    if k == 1:
        return np.zeros(n, dtype=np.int64), lam
    return kmeans(_unit_rows(vecs[:, :k]), k, seed=seed), lam


def merge_alike(features: np.ndarray, labels: np.ndarray, alike: float = 0.9) -> np.ndarray:
    """Join two groups while their members are, on average, ``alike`` times as similar across the
    groups as within the less coherent of them.

    A nearest-neighbour graph of one homogeneous cloud still has communities, and the eigengap
    then splits one kind of evidence into several groups (35 explanations of a corner cue, with
    pairwise similarities of 0.93 to 0.99, came out as three groups). Mean similarities come
    from the group means (mean over pairs of x_i . x_j = mean_a . mean_b): no N x N matrix."""
    labels = labels.copy()
    while len(np.unique(labels)) > 1:
        ids = np.unique(labels)
        means = np.stack([features[labels == g].mean(0) for g in ids])
        sim = means @ means.T
        within = np.diag(sim).copy()
        ratio = sim / np.minimum(within[:, None], within[None, :]).clip(1e-12)
        np.fill_diagonal(ratio, -1)
        a, b = np.unravel_index(np.argmax(ratio), ratio.shape)
        if ratio[a, b] < alike:
            break
        labels[labels == ids[b]] = ids[a]
    return _by_size(labels)


def kmeans(x: np.ndarray, k: int, seed: int = 0, iterations: int = 50, restarts: int = 4) -> np.ndarray:
    """Labels of k-means (k-means++ starts, best of ``restarts``), deterministic for a seed."""
    rng = np.random.default_rng(seed)
    best, best_cost = None, np.inf
    for _ in range(restarts):
        centres = x[[rng.integers(len(x))]]
        while len(centres) < k:
            d2 = ((x[:, None] - centres[None]) ** 2).sum(-1).min(1)
            p = d2 / d2.sum() if d2.sum() > 0 else np.full(len(x), 1 / len(x))
            centres = np.vstack([centres, x[rng.choice(len(x), p=p)]])
        for _ in range(iterations):
            labels = ((x[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
            new = np.array([x[labels == j].mean(0) if (labels == j).any() else centres[j] for j in range(k)])
            if np.allclose(new, centres):
                break
            centres = new
        cost = ((x - centres[labels]) ** 2).sum()
        if cost < best_cost:
            best, best_cost = labels, cost
    return _by_size(best)


def _by_size(labels: np.ndarray) -> np.ndarray:
    """Groups numbered 0.. by size, largest first (so labels do not depend on a k-means start)."""
    ids, inverse, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    rank = np.empty(len(ids), dtype=np.int64)
    rank[np.argsort(-sizes, kind="stable")] = np.arange(len(ids))
    return rank[inverse]


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)
