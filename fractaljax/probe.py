"""Linear probes on frozen ViT features: per layer, closed-form ridge regression.

Features are the pooled pre-logits and every block's token average (``aux['blocks']``),
extracted with one jit-compiled, batched forward pass. The probe is big_vision's few-shot
evaluator: standardise the features, regress one-hot targets (in {-1, 1}) by ridge
regression, predict the argmax. The regulariser is chosen on a held-out part of the train
split from a log grid; one eigendecomposition of X^T X serves the whole grid.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

L2_GRID = tuple(2.0**k for k in range(-6, 15, 2))


def map_batches(fn, images: jax.Array, batch_size: int = 256):
    """``fn`` over fixed-size batches of ``images`` (the last one zero-padded, so ``fn``
    compiles once); returns ``fn``'s output pytree with the batches concatenated as NumPy."""
    outs = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size]
        n = len(x)
        if n < batch_size:
            x = jnp.concatenate([x, jnp.zeros((batch_size - n,) + x.shape[1:], x.dtype)])
        outs.append(jax.tree.map(lambda a, n=n: np.asarray(a[:n]), fn(x)))
    return jax.tree.map(lambda *a: np.concatenate(a), *outs)


@functools.lru_cache(maxsize=16)
def feature_fn(model, normalize=None) -> Callable:
    """``jit((params, images) -> {layer: features})``: the parameters are an argument, so
    one compiled program serves every checkpoint (an evaluator calls it many times); one
    per model (Flax modules hash by their fields), shared by every call."""
    from fractaljax.augment import normalize as default_normalize

    norm = normalize or default_normalize

    @jax.jit
    def forward(params, x):
        _, aux = model.apply({"params": params}, norm(x))
        feats = {f"block{i}": f for i, f in enumerate(aux["blocks"])}
        feats["pre_logits"] = aux["pre_logits"]
        return feats

    return forward


def extract_features(
    model, params, images: jax.Array, batch_size: int = 256, normalize=None, fn=None
) -> dict[str, np.ndarray]:
    """Features of every layer, ``{'block0': f32[N, D], ..., 'pre_logits': f32[N, D]}``.

    Args:
      model: a :class:`fractaljax.models.vit.ViT`.
      params: its parameters.
      images: ``float32[N, H, W, C]`` in [0, 1].
      batch_size: forward batch (see :func:`map_batches`).
      normalize: input normalisation (default: the pre-training one, mean = std = 0.5).
      fn: a :func:`feature_fn` of ``model`` to reuse (default: a new one, compiled here).
    """
    forward = fn or feature_fn(model, normalize)
    return map_batches(lambda x: forward(params, x), images, batch_size)


def _ridge_weights(xtx_eig, xty, l2s):
    """W(l2) = V diag(1 / (e + l2)) V^T X^T Y for each l2, from eig(X^T X) = (e, V)."""
    e, v = xtx_eig
    vty = v.T @ xty
    return [v @ (vty / (e + l2)[:, None]) for l2 in l2s]


def ridge_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    num_classes: int,
    l2_grid: Sequence[float] = L2_GRID,
    val_fraction: float = 0.2,
    seed: int = 0,
    heldout: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, float]:
    """Fit a ridge-regression classifier on ``train``, report top-1 on ``test``.

    The regulariser is chosen on a held-out ``val_fraction`` of ``train``; the classifier is
    then refitted on all of ``train``. ``heldout`` (features, labels): another labelled set,
    e.g. a protocol's validation split, on which the final classifier is also scored.

    Returns:
      ``{'accuracy': test top-1, 'l2': the chosen regulariser, 'val_accuracy': its held-out
      top-1}``, and ``'heldout_accuracy'`` with ``heldout``.
    """
    x = np.asarray(train_x, np.float64)
    mean, std = x.mean(0), x.std(0) + 1e-6
    std_x = lambda a: np.concatenate(
        [(np.asarray(a, np.float64) - mean) / std, np.ones((len(a), 1))], 1
    )  # bias column
    xs, xt = std_x(train_x), std_x(test_x)
    ys = 2.0 * np.eye(num_classes)[train_y] - 1.0

    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(xs))
    n_val = max(int(len(xs) * val_fraction), 1)
    val, fit = perm[:n_val], perm[n_val:]
    eig = np.linalg.eigh(xs[fit].T @ xs[fit])
    accs = [
        float((np.argmax(xs[val] @ w, 1) == train_y[val]).mean())
        for w in _ridge_weights(eig, xs[fit].T @ ys[fit], l2_grid)
    ]
    best = int(np.argmax(accs))
    l2 = l2_grid[best] * len(xs) / len(fit)  # same strength per example on the full split
    (w,) = _ridge_weights(np.linalg.eigh(xs.T @ xs), xs.T @ ys, [l2])
    acc = float((np.argmax(xt @ w, 1) == np.asarray(test_y)).mean())
    out = {"accuracy": acc, "l2": float(l2), "val_accuracy": accs[best]}
    if heldout is not None:
        hx, hy = heldout
        out["heldout_accuracy"] = float((np.argmax(std_x(hx) @ w, 1) == np.asarray(hy)).mean())
    return out


def probe_layers(
    train_feats: dict[str, np.ndarray],
    train_y,
    test_feats: dict[str, np.ndarray],
    test_y,
    num_classes: int,
    heldout: tuple[dict[str, np.ndarray], np.ndarray] | None = None,
) -> dict[str, dict[str, float]]:
    """:func:`ridge_probe` on every layer; keys in network order. ``heldout``: (per-layer
    features, labels) of a validation set scored as well."""
    return {
        k: ridge_probe(
            train_feats[k],
            train_y,
            test_feats[k],
            test_y,
            num_classes,
            heldout=None if heldout is None else (heldout[0][k], heldout[1]),
        )  # fmt: skip
        for k in train_feats
    }


def best_layer(probes: dict[str, dict[str, float]]) -> str:
    """The layer whose probe did best on its held-out *validation* split of the train set
    (``val_accuracy``); the test accuracy never takes part in the choice. Ties go to the
    earlier layer."""
    return max(probes, key=lambda k: probes[k]["val_accuracy"])
