"""LPCE, the locally perturbed cross-entropy of 1p-frac, in the optax loss convention.

Nakamura et al. (ECCV 2024) pre-train on the LIEP distribution

    p_Delta(x, y) = 1/|R_Delta| * Integral delta(x - I_eps) delta(y - eps) d eps,

the images I_eps of one fractal under perturbations eps in R_Delta, labelled by the
perturbation that drew them, and minimise

    L_Delta = -E_{(x, y) ~ p_Delta} log p_theta(y | x).

With the perturbations discretised into L classes eps_1..eps_L this is the L-way
cross-entropy: the network learns to tell which perturbation drew the image.

Losses here are per-example, ``(logits float[..., L], labels) -> float[...]``, like
``optax.softmax_cross_entropy``; reduce them with ``.mean()``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def smooth_labels(labels: jax.Array, num_classes: int, label_smoothing: float = 0.0) -> jax.Array:
    """Integer labels ``int[...]`` -> targets ``float32[..., L]`` with label smoothing:
    ``(1 - s) * one_hot + s / L``."""
    onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    return onehot * (1.0 - label_smoothing) + label_smoothing / num_classes


def lpce(logits: jax.Array, labels: jax.Array, *, label_smoothing: float = 0.0) -> jax.Array:
    """Locally perturbed cross-entropy, per example.

    Args:
      logits: ``float[..., L]``, one logit per perturbation class.
      labels: ``int[...]`` class indices, or ``float[..., L]`` soft targets (e.g. after
        mixup/cutmix, which already carry any label smoothing).
      label_smoothing: applied to integer labels only.

    Returns:
      ``float32[...]``: ``-sum_l t_l log softmax(logits)_l``.
    """
    logits = logits.astype(jnp.float32)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        labels = smooth_labels(labels, logits.shape[-1], label_smoothing)
    return optax.softmax_cross_entropy(logits, labels)
