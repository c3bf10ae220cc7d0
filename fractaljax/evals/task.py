"""How well a pre-trained network solves its own pre-training task, and what it learned.

Two accuracies on the pre-training classes, both on balanced sets (every class equally
often) with the evaluation transform (the canvas resized to the model's input, no crop):

* ``clean``: the source's own images (for a fixed data set such as the official 1p-frac,
  exactly the images it trained on, unaugmented);
* ``redrawn``: the same classes drawn again by the generator with a fresh walk and fresh
  3x3 patches (``render.render`` of each class's system under a new key). A network that
  memorised the pixel pattern of each fixed image (its speckle) fails here; one that learned
  the shapes of the classes does not. Defined for sources with per-class systems (1p-frac,
  FractalDB, OFDB); None for the real-image source.

Both are pure functions of (model, params, source, seed); the batches are jit-compiled once.
As an evaluator of the training loop (``config.evals.task``, see fractaljax.evals), it logs
``task_clean_top1`` and ``task_redrawn_top1`` at its interval.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fractaljax import augment, keys, models
from fractaljax import render as render_lib


def _balanced_labels(num_classes: int, num: int) -> jax.Array:
    return jnp.arange(num, dtype=jnp.int32) % num_classes


def accuracy(
    model,
    params,
    source,
    input_size: int,
    interpolation: str = "bilinear",
    *,
    num: int = 2048,
    redrawn: bool = False,
    seed: int = 0,
    batch_size: int = 256,
) -> float | None:
    """Top-1 of ``model`` on ``num`` images of ``source``'s classes (``num`` rounded up to a
    whole batch), clean or ``redrawn`` (None where the source cannot redraw a class)."""
    if redrawn and source.systems is None:
        return None
    key = keys.stream(seed, "eval")
    key = jax.random.fold_in(key, 1 if redrawn else 0)
    spec = source.spec

    @jax.jit
    def correct(labels, k):
        if redrawn:
            systems = jax.tree.map(lambda a: a[labels], source.systems)
            images = render_lib.render(spec, systems, k)
        else:
            images = source.render_labels(labels, k)
        x = augment.model_input(images, input_size, interpolation)
        logits, _ = model.apply({"params": params}, x)
        return jnp.sum(jnp.argmax(logits, -1) == labels)

    labels = _balanced_labels(source.num_classes, -(-num // batch_size) * batch_size)
    hits = [
        int(correct(labels[i : i + batch_size], jax.random.fold_in(key, i)))
        for i in range(0, len(labels), batch_size)
    ]
    return float(np.sum(hits) / len(labels))


def task_accuracies(model, params, source, config, num: int = 2048) -> dict[str, float | None]:
    """``{'clean_top1', 'redrawn_top1'}`` of a pre-training run's network (``config``: the
    run's config, for its input size, interpolation and seed)."""
    size = models.input_size(config, source)
    method = augment.interpolation(config.augment)
    kw = dict(num=num, seed=config.seed)
    return {
        "clean_top1": accuracy(model, params, source, size, method, **kw),
        "redrawn_top1": accuracy(model, params, source, size, method, redrawn=True, **kw),
    }


def make(config: ml_collections.ConfigDict, model, source, workdir: str, cfg) -> Callable:
    """The evaluator: ``params -> {'task_clean_top1', 'task_redrawn_top1'}`` on
    ``cfg.num`` images (default 2,048); the redrawn one only where the source can redraw."""
    del workdir
    num = int(cfg.get("num", 2048))

    def run(params) -> dict[str, float]:
        acc = task_accuracies(model, params, source, config, num=num)
        return {f"task_{k}": v for k, v in acc.items() if v is not None}

    return run
