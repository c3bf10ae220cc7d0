"""Downstream evaluation of a (pre-trained or random) ViT on a real labelled set:
full fine-tuning on a labelled subset, and per-layer linear probes.

Both reuse the pre-training machinery: fine-tuning is ``train.run`` with an
:class:`fractaljax.downstream.ArraySource` and a new head; probes are
:func:`fractaljax.probe.probe_layers` on frozen features.
"""

from __future__ import annotations

import functools
import os
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fractaljax import augment, downstream, probe, train
from fractaljax.augment import normalize
from fractaljax.errors import ConfigError


class Splits(NamedTuple):
    """A labelled downstream set at the model's input: images ``float32[N, S, S, C]`` in
    [0, 1], labels ``int32[N]``. ``train`` is a seeded random subset of the train split, in an
    order that is the same for any size, so ``labelled(n)`` (its first n) is nested. ``val``
    (empty when ``downstream.val_size`` is 0) is a held-out part of the train split, disjoint
    from ``train``: the data on which a protocol chooses anything (a learning rate, a layer, a
    variant of the protocol itself); the test split is only reported."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    name: str
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    def labelled(self, n: int) -> Splits:
        """The same set with only the first ``n`` training examples (all if 0)."""
        return self._replace(x_train=self.x_train[: n or None], y_train=self.y_train[: n or None])

    @property
    def has_val(self) -> bool:
        return self.y_val is not None and len(self.y_val) > 0


def load_downstream(
    cfg: ml_collections.ConfigDict, size: int, channels: int, num_train: int
) -> Splits:
    """``cfg.downstream``'s set at ``size`` px and ``channels``: ``num_train`` training
    examples (all if 0 or more than there are, see :class:`Splits`), ``downstream.val_size``
    validation examples
    (the last ones of the same seeded permutation of the train split, so never among the
    training ones), the test split's first ``downstream.test_limit`` (all if 0)."""
    d = cfg.downstream
    data_dir, source_dir = d.data_dir or None, d.source_dir or None
    tr = downstream.load(d.dataset, "train", data_dir, source_dir)
    te = downstream.load(d.dataset, "test", data_dir, source_dir, limit=d.test_limit or None)
    idx = np.random.default_rng(cfg.seed).permutation(len(tr.labels))
    n_val = int(d.get("val_size", 0))
    if n_val < 0 or n_val >= len(idx):
        raise ConfigError(
            f"downstream.val_size={n_val}: must be in [0, {len(idx)}) for {d.dataset} "
            f"({len(idx)} training images)"
        )
    val, idx = idx[len(idx) - n_val :], idx[: len(idx) - n_val]
    idx = idx[:num_train] if num_train else idx
    method = augment.interpolation(cfg.augment)
    as_input = lambda s, i: downstream.to_model_input(s.images[i], size, channels, method)
    return Splits(
        as_input(tr, idx), tr.labels[idx], as_input(te, slice(None)), te.labels, tr.num_classes,
        d.dataset, as_input(tr, val) if n_val else None, tr.labels[val] if n_val else None,
    )  # fmt: skip


def predict(model, params, images: jax.Array, batch_size: int = 256) -> np.ndarray:
    """Arg-max predictions ``int[N]``, in fixed-size batches."""
    forward = _predict_fn(model)
    return probe.map_batches(lambda x: forward(params, x), images, batch_size)


@functools.lru_cache(maxsize=16)
def _predict_fn(model):
    """``jit((params, images) -> labels)`` of a model (Flax modules hash by their fields):
    the parameters are an argument, not constants baked into the program, so every
    fine-tuned model of one architecture shares one compiled program."""
    logits = lambda params, x: model.apply({"params": params}, normalize(x))[0]
    return jax.jit(lambda params, x: jnp.argmax(logits(params, x), -1))


def run_config(ft: ml_collections.ConfigDict, pre: ml_collections.ConfigDict):
    """The fine-tuning run's config: ``ft``'s optimisation, ``pre``'s model and input size
    (the data's shape and classes come from its source)."""
    c = ml_collections.ConfigDict(ft.to_dict())
    c.model = ml_collections.ConfigDict(pre.model.to_dict())
    # Downstream images arrive at the model's input size: no canvas to crop from.
    c.input_size = train.input_size(pre)
    return c


def finetune(
    ft: ml_collections.ConfigDict,
    pre: ml_collections.ConfigDict,
    init_params,
    workdir: str,
    data: Splits | None = None,
) -> dict:
    """Fine-tune ``pre``'s model (from ``init_params``, or random if None) on the first
    ``ft.downstream.num_labels`` training examples of ``data`` (loaded from ``ft`` if None).

    While it trains, the logged ``eval_*`` metrics are on held-out images: the next
    ``ft.eval_batch_size`` training-split images after the labelled ones, never trained on
    (when ``data`` has none left over, the last ones of the labelled set are held out of
    training instead). The test split is used once, at the end.

    Returns:
      The training summary plus ``test_accuracy``, and ``val_accuracy`` (on ``data``'s
      validation split) when it has one.
    """
    size, channels = train.input_size(pre), pre.render.channels
    n = ft.downstream.num_labels
    data = data or load_downstream(ft, size, channels, n + ft.eval_batch_size if n else 0)
    n = n or len(data.y_train)
    held = slice(n, n + ft.eval_batch_size)
    if len(data.y_train[held]) == 0:  # nothing beyond the labelled set: hold out its tail
        n = max(len(data.y_train) - ft.eval_batch_size, 1)
        held = slice(n, None)
    cfg = run_config(ft, pre)
    arrays = lambda i: (jnp.asarray(data.x_train[i]), jnp.asarray(data.y_train[i]))
    src = downstream.ArraySource(*arrays(slice(n)), data.num_classes, data.name)
    val = downstream.ArraySource(*arrays(held), data.num_classes, data.name)
    summary, model, params, _ = train.run(
        cfg, workdir, source=src, init_params=init_params, eval_source=val
    )
    summary["test_accuracy"] = float((predict(model, params, data.x_test) == data.y_test).mean())
    if data.has_val:
        summary["val_accuracy"] = float((predict(model, params, data.x_val) == data.y_val).mean())
    return summary


def linear_probe(model, params, data: Splits, batch_size: int = 256, fn=None) -> dict[str, dict]:
    """Per-layer ridge probes fitted on ``data``'s training examples, tested on its test
    split: ``{layer: {'accuracy', 'l2', 'val_accuracy'}}`` (``val_accuracy``: on the probe's
    own held-out fifth of the training examples, which chooses the regulariser and the best
    layer), plus ``'heldout_accuracy'`` on ``data``'s validation split when it has one.
    ``fn``: a :func:`fractaljax.probe.feature_fn` of ``model`` to reuse across calls."""
    feats = lambda x: probe.extract_features(model, params, x, batch_size, fn=fn)
    val = (feats(data.x_val), data.y_val) if data.has_val else None
    return probe.probe_layers(
        feats(data.x_train), data.y_train, feats(data.x_test), data.y_test, data.num_classes, val
    )


def lr_grid(ft: ml_collections.ConfigDict) -> tuple[float, ...]:
    """The fine-tuning learning rates to try: ``optim.lr_grid``, or just ``optim.lr``."""
    grid = tuple(float(v) for v in ft.optim.get("lr_grid", ()) or ())
    if any(not v > 0 for v in grid):
        raise ConfigError(f"optim.lr_grid={grid}: learning rates must be > 0")
    return grid or (float(ft.optim.lr),)


def finetune_selected(
    ft: ml_collections.ConfigDict, pre, init_params, workdir: str, data: Splits
) -> dict:
    """Fine-tune once per learning rate of :func:`lr_grid` (in ``workdir_lr<lr>`` when there
    are several) and keep the run with the best validation accuracy: the learning rate is
    chosen per init, on the validation split, never on test.

    Returns:
      ``{'test_accuracy', 'val_accuracy' (NaN without a validation split), 'lr',
      'val_by_lr': {lr: val_accuracy}}`` of the chosen run.
    """
    grid = lr_grid(ft)
    if len(grid) > 1 and not data.has_val:
        raise ConfigError(
            f"optim.lr_grid={grid}: choosing a learning rate needs a validation split; set "
            "downstream.val_size > 0"
        )
    runs = {}
    for lr in grid:
        c = ml_collections.ConfigDict(ft.to_dict())
        c.optim.lr = lr
        where = workdir if len(grid) == 1 else f"{workdir}_lr{lr:g}"
        runs[lr] = finetune(c, pre, init_params, where, data)
    val = {lr: r.get("val_accuracy", float("nan")) for lr, r in runs.items()}
    best = max(grid, key=lambda lr: val[lr]) if len(grid) > 1 else grid[0]
    return {
        "test_accuracy": runs[best]["test_accuracy"],
        "val_accuracy": val[best],
        "lr": best,
        "val_by_lr": val,
    }


def evaluate_transfer(
    model, params, init_params, data: Splits, ft, pre, workdir: str, few_labels: int = 0
) -> dict:
    """The transfer of one model (``params``; fine-tuned from ``init_params``, random if
    None) to ``data``: per-layer probes, fine-tuning on ``ft.downstream.num_labels`` labels
    (in ``workdir/finetune``), and with ``few_labels`` > 0 the same on the first
    ``few_labels`` labelled images (``workdir/finetune_<n>labels``; for
    ``ft.few_labels_steps`` steps when set).

    The best probe layer is chosen on the probe's validation split (the training set's
    own held-out part), and the fine-tuning learning rate (with ``optim.lr_grid``) on
    ``data``'s validation split: never on test data. Returns one flat row:
    ``finetune_top1``, ``probe_last_top1`` (pre-logits), ``probe_best_top1`` and
    ``probe_best_layer``, ``probe_<layer>`` for every layer, the ``*_<n>labels_*`` twins,
    wall times; with a validation split also ``*_val_top1`` of each headline metric,
    ``finetune_lr`` and ``finetune_lr<lr>_val_top1`` of every learning rate tried.
    """
    row = {}
    for n in (0, few_labels) if few_labels else (0,):
        tag = f"_{n}labels" if n else ""
        t0 = time.perf_counter()
        probes = linear_probe(model, params, data.labelled(n))
        t_probe = time.perf_counter() - t0
        ft_n = ml_collections.ConfigDict(ft.to_dict())
        if n:
            ft_n.downstream.num_labels = n
            if ft.get("few_labels_steps", 0):  # fewer labels, fewer steps: similar epochs
                ft_n.total_steps = ft_n.checkpoint_every = ft.few_labels_steps
        run = finetune_selected(
            ft_n, pre, init_params, os.path.join(workdir, f"finetune{tag}"), data
        )
        best = probe.best_layer(probes)
        row.update(
            {
                f"finetune{tag}_top1": run["test_accuracy"],
                f"probe_last{tag}_top1": probes["pre_logits"]["accuracy"],
                f"probe_best{tag}_top1": probes[best]["accuracy"],
                f"probe_best{tag}_layer": best,
            }
        )
        if data.has_val:
            row.update(
                {
                    f"finetune{tag}_val_top1": run["val_accuracy"],
                    f"probe_last{tag}_val_top1": probes["pre_logits"]["heldout_accuracy"],
                    f"probe_best{tag}_val_top1": probes[best]["heldout_accuracy"],
                }
            )
        if len(run["val_by_lr"]) > 1:
            row[f"finetune{tag}_lr"] = run["lr"]
            row.update(
                {f"finetune{tag}_lr{lr:g}_val_top1": v for lr, v in run["val_by_lr"].items()}
            )
        if not n:
            row.update({f"probe_{k}": v["accuracy"] for k, v in probes.items()})
            row.update(probe_seconds=t_probe, finetune_seconds=time.perf_counter() - t0 - t_probe)
    return row


def probe_layers_of(row: dict) -> dict[str, dict[str, float]]:
    """The per-layer probe accuracies of an :func:`evaluate_transfer` row, as
    ``{layer: {'accuracy'}}`` for :func:`plot_probe`."""
    return {
        k[len("probe_") :]: {"accuracy": v}
        for k, v in row.items()
        if k.startswith(("probe_block", "probe_pre_logits"))
    }


def random_init(pre: ml_collections.ConfigDict, seed: int):
    """Parameters of ``pre``'s model at initialisation (the random-init baseline): with the
    pre-training's init key for ``seed`` (:func:`fractaljax.train.init_key`), the very
    weights a pre-training run of that seed starts from."""
    model = train.make_model(pre, train.num_outputs(pre, pre.source.num_classes))
    s = train.input_size(pre)
    x = jnp.zeros((1, s, s, pre.render.channels))
    return model, jax.jit(model.init)(train.init_key(seed), x)["params"]


def plot_probe(
    results: dict[str, dict[str, dict[str, float]]],
    path: str,
    title: str,
    best: dict[str, str] | None = None,
) -> None:
    """Per-layer probe accuracy, one line per model: ``{model: {layer: {'accuracy'}}}``;
    ``best`` (``{model: layer}``, chosen on validation) is ringed. The y-axis starts at 0
    (a zoomed axis would magnify a point's gap into a chasm)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (name, layers) in enumerate(results.items()):
        color = f"C{i}"
        ys = [100 * v["accuracy"] for v in layers.values()]
        ax.plot(list(layers), ys, "o-", color=color, label=name)
        if best and name in best:
            x = list(layers).index(best[name])
            ax.plot([x], [ys[x]], "o", ms=13, mfc="none", mec=color, mew=1.5)
    ax.set_ylim(0, 100)
    ax.set_xlabel("layer" + ("  (ringed: chosen on validation)" if best else ""))
    ax.set_ylabel("linear probe test top-1 (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
