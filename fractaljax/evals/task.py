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

from fractaljax import augment, keys, models, sharding
from fractaljax import render as render_lib
from fractaljax.errors import ConfigError

# Images of the classes measured where ``evals.task.num`` is not set.
DEFAULT_NUM = 2048


def num_of(config: ml_collections.ConfigDict) -> int:
    """``evals.task.num`` of a run config (:data:`DEFAULT_NUM` where it has none)."""
    return int(config.get("evals", {}).get("task", {}).get("num", DEFAULT_NUM))


def _balanced_labels(num_classes: int, num: int) -> jax.Array:
    return jnp.arange(num, dtype=jnp.int32) % num_classes


def accuracy(
    model,
    params,
    source,
    input_size: int,
    interpolation: str = "bilinear",
    *,
    num: int = DEFAULT_NUM,
    redrawn: bool = False,
    seed: int = 0,
    batch_size: int = 256,
) -> float | None:
    """Top-1 of ``model`` on ``num`` images of ``source``'s classes (``num`` rounded up to a
    whole batch), clean or ``redrawn`` (None where the source cannot redraw a class)."""
    if redrawn and source.systems is None:
        return None
    correct = correct_fn(model, source, input_size, interpolation, redrawn)
    return accuracy_of(correct, params, source.num_classes, num, redrawn, seed, batch_size)


def correct_fn(model, source, input_size: int, interpolation: str, redrawn: bool) -> Callable:
    """``(params, labels, key) -> number correct`` on images of classes ``labels``, jitted
    with the parameters and the source's arrays as arguments: compiled once for every
    checkpoint and seed it is called on."""

    @jax.jit
    def correct(params, arrays, systems, labels, k):
        if redrawn:
            chosen = jax.tree.map(lambda a: a[labels], systems)
            images = render_lib.render(source.spec, chosen, k)
        else:
            images = source.with_arrays(arrays).render_labels(labels, k)
        x = augment.model_input(images, input_size, interpolation)
        logits, _ = model.apply({"params": params}, x)
        return jnp.sum(jnp.argmax(logits, -1) == labels)

    # Replicated once: a program over several devices would otherwise copy them every call.
    arrays, systems = sharding.replicate((source.arrays, source.systems), sharding.data_mesh())
    return lambda params, labels, k: correct(params, arrays, systems, labels, k)


def accuracy_of(
    correct: Callable, params, num_classes: int, num: int, redrawn: bool, seed: int,
    batch_size: int = 256,
) -> float:  # fmt: skip
    """The top-1 that :func:`correct_fn`'s ``correct`` gives on a balanced set of ``num``."""
    key = jax.random.fold_in(keys.stream(seed, "eval"), 1 if redrawn else 0)
    labels = _balanced_labels(num_classes, -(-num // batch_size) * batch_size)
    hits = [
        int(correct(params, labels[i : i + batch_size], jax.random.fold_in(key, i)))
        for i in range(0, len(labels), batch_size)
    ]
    return float(np.sum(hits) / len(labels))


def task_accuracies(
    model, params, source, config, num: int = DEFAULT_NUM
) -> dict[str, float | None]:
    """``{'clean_top1', 'redrawn_top1'}`` of a pre-training run's network (``config``: the
    run's config, for its input size, interpolation and seed)."""
    size = models.input_size(config, source)
    method = augment.interpolation(config.augment)
    kw = dict(num=num, seed=config.seed)
    return {
        "clean_top1": accuracy(model, params, source, size, method, **kw),
        "redrawn_top1": accuracy(model, params, source, size, method, redrawn=True, **kw),
    }


def check(cfg: ml_collections.ConfigDict) -> None:
    """The block's own fields: ``num`` >= 1 images, nothing else."""
    unknown = sorted(set(cfg) - {"every", "num"})
    if unknown:
        raise ConfigError(f"evals.task.{unknown[0]}: no such field; the fields are every, num")
    num = cfg.get("num", DEFAULT_NUM)
    if not isinstance(num, int) or num < 1:
        raise ConfigError(f"evals.task.num={cfg.num}: must be an integer >= 1")


def make(config: ml_collections.ConfigDict, model, source, workdir: str, cfg) -> Callable:
    """The evaluator: ``params -> {'task_clean_top1', 'task_redrawn_top1'}`` on
    ``cfg.num`` images (default 2,048); the redrawn one only where the source can redraw."""
    del workdir
    num = int(cfg.get("num", DEFAULT_NUM))
    size = models.input_size(config, source)
    method = augment.interpolation(config.augment)
    # Built once: every call of the evaluator reuses the two compiled programs.
    fns = {"clean_top1": correct_fn(model, source, size, method, False)}
    if source.systems is not None:
        fns["redrawn_top1"] = correct_fn(model, source, size, method, True)

    def run(params) -> dict[str, float]:
        return {
            f"task_{name}": accuracy_of(fn, params, source.num_classes, num,
                                        name == "redrawn_top1", config.seed)
            for name, fn in fns.items()
        }  # fmt: skip

    return run
