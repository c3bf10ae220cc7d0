"""The run directory: what a run writes beside its checkpoints, and how it is read back.

    WORKDIR/config.json           the config that the checkpoints follow
    WORKDIR/config_changes.jsonl  changes made when the run resumed, with their step
    WORKDIR/source.json           what the run trained on, as its source reported it
    WORKDIR/summary.json          written once the run reaches ``total_steps``
    WORKDIR/checkpoints/<step>/   orbax (fractaljax.checkpoint): step, params, opt_state
    WORKDIR/metrics.jsonl, tb/    fractaljax.metrics

It also holds the one definition of which config fields change *how* a run computes and
not *what* (:data:`NEUTRAL_FIELDS`, :data:`LATER_DEFAULTS`, :data:`MDN_FIELDS`), read by the
resume check and by a sweep point's identity (:func:`identity_config`). :func:`load` reads
a run's model and weights back without building an optimiser.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from fractaljax import files, keys, models, sharding
from fractaljax.checkpoint import Checkpoints
from fractaljax.errors import CheckpointError, ConfigError, UserError


def prepare(workdir: str, config: ml_collections.ConfigDict | None = None) -> None:
    """Create the workdir (or check it is writable); record the config there if given."""
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write_test.{jax.process_index()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise UserError(
            f"{workdir}: not writable ({e.strerror}); pick a directory you can write"
        ) from None
    if config is not None:
        record_config(workdir, config)


def record_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Write ``WORKDIR/config.json``; a resumed run keeps the config it started with."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        write_config(path, config)


def write_config(path: str, config: ml_collections.ConfigDict) -> None:
    """Write ``config`` to ``path`` atomically (process 0 only)."""
    if not sharding.is_primary():  # one writer in a multi-process run
        return
    files.write_atomic(path, config.to_json_best_effort(indent=2))


# Fields that change how, not what, is computed: the rasterisers draw a walk identically
# (two compiled programs may round the walk differently: an ulp-moved point at the odd pixel),
# sharding the parameters changes only the order of float sums, the per-image augmentation
# mapped or vmapped gives the same images but for float rounding (a RandAugment level at
# the odd pixel), and evaluators measure the run without touching it. A resume may change
# them, and a sweep point's identity leaves them out.
NEUTRAL_FIELDS = (
    "render.rasterizer",
    "param_sharding",
    "fsdp_min_size",
    "augment.per_image",
    "augment.gray_crop",
    "evals",
)

# Fields that leave a run's trajectory as it is: they may change when a run resumes (the
# change is recorded). total_steps is one by request: extending a run is common, and the
# cosine schedule then follows the new length from the resumed step on.
RESUME_SAFE_FIELDS = (
    "log_every",
    "checkpoint_every",
    "keep_checkpoints",
    "eval_batch_size",
    "total_steps",
    *NEUTRAL_FIELDS,  # also when a run from before these fields resumes
)


# Fields added after runs and sweep points were stored, at the value that reproduces them:
# a config.json without one means this value (a resume sees no change; a stored point's
# identity leaves the field out at this value, so its key stays).
LATER_DEFAULTS = {
    "model.init": "big_vision",
    "source.labels": "true",
    "model.head": "classes",
    "model.mdn_components": 8,
    "model.mdn_prior_share": 0.05,
    "model.mdn_noise": 0.0,
    "source.latent_walk": "fixed",
}
# Fields read only by the 'mdn' head: inert on a 'classes' run, so neither a resume nor a
# sweep point's identity sees them there.
MDN_FIELDS = (
    "model.mdn_components",
    "model.mdn_prior_share",
    "model.mdn_noise",
    "source.latent_walk",
)


def identity_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """``config`` without the fields that do not change what a run computes: the
    :data:`LATER_DEFAULTS` at their defaults, the :data:`NEUTRAL_FIELDS`, and the
    :data:`MDN_FIELDS` of a 'classes' run. Two configs with equal identities train the same
    run, which is what a stored sweep point's key is made of."""
    config = ml_collections.ConfigDict(config.to_dict())
    for path, value in LATER_DEFAULTS.items():
        block, field = path.split(".")
        if block in config and config[block].get(field, value) == value and field in config[block]:
            del config[block][field]
    inert = MDN_FIELDS if config.model.get("head", "classes") == "classes" else ()
    for path in (*NEUTRAL_FIELDS, *inert):
        *blocks, field = path.split(".")
        parent = config
        for b in blocks:
            parent = parent.get(b) if parent is not None else None
        if parent is not None and field in parent:
            del parent[field]
    return config


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_changes(old: dict, new: ml_collections.ConfigDict) -> dict[str, tuple[Any, Any]]:
    """``{dotted field: (old, new)}`` for every field where ``new`` differs from ``old``
    (a ``config.json``); JSON round trip first, so tuples and lists compare equal."""
    a, b = _flat(old), _flat(json.loads(new.to_json_best_effort()))
    a = {**{k: v for k, v in LATER_DEFAULTS.items() if k in b}, **a}
    # An evaluator that a run's record does not name and that is off changes nothing.
    off = {
        k[: -len(".every")]
        for k, v in b.items()
        if k.startswith("evals.") and k.endswith(".every") and not v
    }
    b = {k: v for k, v in b.items() if k in a or k.rsplit(".", 1)[0] not in off}
    if a.get("model.head", "classes") == b.get("model.head", "classes") == "classes":
        a, b = ({k: v for k, v in d.items() if k not in MDN_FIELDS} for d in (a, b))
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


def check_resume(
    workdir: str, config: ml_collections.ConfigDict, step: int, allow_changes: bool
) -> None:
    """Compare the config of a run resumed at ``step`` with its ``config.json``.

    A change to a field that moves the trajectory (source, render, model, batch, optimiser,
    seed, ...) stops the run with :class:`ConfigError`, unless ``allow_changes``; fields of
    :data:`RESUME_SAFE_FIELDS` may change. Any change that goes ahead is appended to
    ``WORKDIR/config_changes.jsonl`` with the step, and ``config.json`` becomes the new
    config (it always describes the checkpoints that follow).
    """
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        changes = config_changes(json.load(f), config)
    if not changes:
        return
    # A block in RESUME_SAFE_FIELDS (evals) covers every field under it.
    safe = lambda k: any(k == f or k.startswith(f + ".") for f in RESUME_SAFE_FIELDS)
    unsafe = [k for k in changes if not safe(k)]
    if unsafe and not allow_changes:
        shown = ", ".join(f"{k} ({changes[k][0]!r} -> {changes[k][1]!r})" for k in unsafe[:4])
        more = f" and {len(unsafe) - 4} more" if len(unsafe) > 4 else ""
        raise ConfigError(
            f"{workdir}: holds a run at step {step} whose config differs in {shown}{more}; "
            "use a new workdir, or continue with the change (allow_changes=True; it is "
            "recorded in config_changes.jsonl)"
        )
    if not sharding.is_primary():
        return
    record = {"step": step, "time": time.time(), "changes": changes, "allowed": bool(unsafe)}
    with open(os.path.join(workdir, "config_changes.jsonl"), "a") as f:
        f.write(json.dumps(record, default=str) + "\n")
    write_config(path, config)
    print(f"resuming at step {step} with changed {', '.join(changes)} (recorded)", flush=True)


def read_source_record(workdir: str, config: ml_collections.ConfigDict) -> dict:
    """What a run trained on (``WORKDIR/source.json``: name, num_classes, image_shape), as
    its source reported it; runs older than that record fall back to their config."""
    path = os.path.join(workdir, "source.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    r = config.render
    shape = (r.image_size, r.image_size, r.channels)
    return {
        "name": config.source.name,
        "num_classes": config.source.num_classes,
        "image_shape": shape,
    }


def write_source_record(workdir: str, source) -> None:
    """``WORKDIR/source.json``: the source's name, number of classes and image shape."""
    if sharding.is_primary():
        record = {
            "name": source.name,
            "num_classes": source.num_classes,
            "image_shape": list(source.image_shape),
        }
        files.write_atomic(os.path.join(workdir, "source.json"), json.dumps(record))


def write_summary(workdir: str, summary: dict[str, Any]) -> None:
    """``WORKDIR/summary.json``, the finished run's summary (process 0 only)."""
    if sharding.is_primary():
        files.write_atomic(os.path.join(workdir, "summary.json"), json.dumps(summary, indent=2))


def read_summary(workdir: str) -> dict[str, Any] | None:
    """A finished run's summary, None for a run that has not finished."""
    path = os.path.join(workdir, "summary.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def read_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a run's checkpoints follow (``WORKDIR/config.json``)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise CheckpointError(
            f"{workdir}: no config.json there; give the workdir of a pre-training run"
        )
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def load(workdir: str, step: int | None = None):
    """``(config, model, params)`` of a run's checkpoint (the latest, or ``step``).

    Only the parameters are read: no optimiser is built and the optimiser state is not
    restored. They come back replicated over the data mesh (``sharding.data_mesh``)."""
    config = read_config(workdir)
    data = read_source_record(workdir, config)
    model = models.make_model(config, models.num_outputs(config, data["num_classes"]))
    ckpt = Checkpoints(workdir)
    try:
        saved = ckpt.all_steps()
        if not saved:
            raise CheckpointError(f"{workdir}: no checkpoint there yet; train it first")
        step = saved[-1] if step is None else step
        if step not in saved:
            raise CheckpointError(f"{workdir}: no checkpoint of step {step}; saved steps: {saved}")
        s = models.input_size(config)
        dummy = jnp.zeros((1, s, s, data["image_shape"][-1]), jnp.float32)
        shapes = jax.eval_shape(lambda: model.init(keys.stream(config.seed, "init"), dummy))
        replicated = jax.sharding.NamedSharding(sharding.data_mesh(), jax.sharding.PartitionSpec())
        like = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated),
            shapes["params"],
        )
        params = ckpt.restore_params(step, like)
    finally:
        ckpt.close()
    return config, model, params
