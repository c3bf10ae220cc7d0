"""Downstream evaluation of a (pre-trained or random) ViT on a real labelled set:
full fine-tuning on a labelled subset, and per-layer linear probes.

Both reuse the pre-training machinery: fine-tuning is ``train.train_and_evaluate`` with an
:class:`fractaljax.downstream.ArraySource` and a new head; probes are
:func:`fractaljax.probe.probe_layers` on frozen features.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fractaljax import downstream, probe, train
from fractaljax.augment import normalize


def load_downstream(cfg: ml_collections.ConfigDict, size: int, channels: int, num_train: int):
    """``(train, test, num_classes)``; train and test are ``(images float32[N, size, size,
    C], labels int32[N])``. The train split is a seeded random subset of ``num_train``
    examples (all if 0), the same prefix for any ``num_train``; the test split its first
    ``downstream.test_limit`` (all if 0)."""
    d = cfg.downstream
    data_dir, source_dir = d.data_dir or None, d.source_dir or None
    tr = downstream.load(d.dataset, "train", data_dir, source_dir)
    te = downstream.load(d.dataset, "test", data_dir, source_dir, limit=d.test_limit or None)
    idx = np.random.default_rng(cfg.seed).permutation(len(tr.labels))
    idx = idx[:num_train] if num_train else idx
    as_input = lambda s, i: (downstream.to_model_input(s.images[i], size, channels), s.labels[i])
    return as_input(tr, idx), as_input(te, slice(None)), tr.num_classes


def predict(model, params, images: jax.Array, batch_size: int = 256) -> np.ndarray:
    """Arg-max predictions ``int[N]``, in fixed-size batches (one compile)."""

    @jax.jit
    def forward(x):
        return jnp.argmax(model.apply({"params": params}, normalize(x))[0], -1)

    return probe.map_batches(forward, images, batch_size)


def run_config(ft: ml_collections.ConfigDict, pre: ml_collections.ConfigDict, num_classes: int):
    """The fine-tuning run's config: ``ft``'s optimisation, ``pre``'s model and input size."""
    c = ml_collections.ConfigDict(ft.to_dict())
    c.model = ml_collections.ConfigDict(pre.model.to_dict())
    c.render = ml_collections.ConfigDict(pre.render.to_dict())
    # Downstream images arrive at the model's input size: no canvas to crop from.
    c.render.image_size = c.input_size = train.input_size(pre)
    c.source = ml_collections.ConfigDict(
        {"name": f"downstream:{ft.downstream.dataset}", "num_classes": num_classes}
    )
    return c


def finetune(
    ft: ml_collections.ConfigDict,
    pre: ml_collections.ConfigDict,
    init_params,
    workdir: str,
    data=None,
) -> dict:
    """Fine-tune ``pre``'s model (from ``init_params``, or random if None) on ``ft``'s data.

    Returns the training summary plus ``test_accuracy``.
    """
    size, channels = train.input_size(pre), pre.render.channels
    n = ft.downstream.num_labels
    (x_tr, y_tr), (x_te, y_te), num_classes = data or load_downstream(ft, size, channels, n)
    x_tr, y_tr = (x_tr[:n], y_tr[:n]) if n else (x_tr, y_tr)
    cfg = run_config(ft, pre, num_classes)
    src = downstream.ArraySource(x_tr, jnp.asarray(y_tr), num_classes, ft.downstream.dataset)
    summary = train.train_and_evaluate(cfg, workdir, source=src, init_params=init_params)
    _, model, params = train.load_pretrained(workdir)
    summary["test_accuracy"] = float((predict(model, params, x_te) == np.asarray(y_te)).mean())
    return summary


def linear_probe(model, params, data, batch_size: int = 256) -> dict[str, dict[str, float]]:
    """Per-layer ridge probes: ``{layer: {'accuracy', 'l2', 'val_accuracy'}}``."""
    (x_tr, y_tr), (x_te, y_te), num_classes = data
    f_tr = probe.extract_features(model, params, x_tr, batch_size)
    f_te = probe.extract_features(model, params, x_te, batch_size)
    return probe.probe_layers(f_tr, np.asarray(y_tr), f_te, np.asarray(y_te), num_classes)


def random_init(pre: ml_collections.ConfigDict, seed: int):
    """Parameters of ``pre``'s model at initialisation (the random-init baseline): with the
    pre-training's init key for ``seed`` (:func:`fractaljax.train.init_key`), the very
    weights a pre-training run of that seed starts from."""
    model = train.make_model(pre, pre.source.num_classes)
    s = train.input_size(pre)
    x = jnp.zeros((1, s, s, pre.render.channels))
    return model, jax.jit(model.init)(train.init_key(seed), x)["params"]


def plot_probe(results: dict[str, dict[str, dict[str, float]]], path: str, title: str) -> None:
    """Per-layer probe accuracy, one line per model: ``{model: {layer: {'accuracy'}}}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, layers in results.items():
        ax.plot(list(layers), [100 * v["accuracy"] for v in layers.values()], "o-", label=name)
    ax.set_xlabel("layer")
    ax.set_ylabel("linear probe top-1 (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
