"""Pre-training: one jit-compiled step renders a batch, augments it, and updates a ViT.

    key_step = fold_in(seed_key, step)
    images, labels = source.batch(...)        # fractals drawn on device, from (seed, step)
    x, targets = augment(images, labels)      # crop, flips, jitter, erasing, mixup/cutmix
    loss = lpce(vit(x), targets)              # L-way cross-entropy over the perturbations
    state = adamw_update(state, grad(loss))

With ``model.head='mdn'`` (configs/amortized.py) the step instead draws fresh multipliers u
of the 1p-frac base with their images (``source.latent_batch``), adds the observation noise,
and minimises the mixture density's negative log-likelihood of u (fractaljax/mdn.py): the
amortized proposal q(u | x) of fractaljax.inference, trained in the same loop.

There is no host data pipeline: the batch at step k is a pure function of (seed, k), so a
run resumed from a checkpoint at step k sees exactly the batches it would have seen.
``train_and_evaluate(config, workdir)`` is the whole loop: checkpoints (orbax, resumed
automatically), metrics (stdout progress with ETA, metrics.jsonl, TensorBoard), a NaN guard.

Why one file of this size: a readable train.py is the point (big_vision, Flax examples): the
step, its optimiser and the loop are read together. What is not the loop lives elsewhere:
the run directory in run_dir.py, the model of a config in models/, evaluators in evals/.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state
from jax.experimental import multihost_utils

from fractaljax import augment, config_utils, evals, keys, mdn, run_dir, sharding, sources
from fractaljax.checkpoint import Checkpoints
from fractaljax.errors import (
    ConfigError,
    Preempted,
    TrainingDiverged,
    UserError,
    removed_on_bad_input,
)
from fractaljax.losses import lpce
from fractaljax.metrics import MetricWriter, format_duration
from fractaljax.models import DTYPES, HEADS, head, input_size, make_model, num_outputs  # noqa: F401

# ---- Schedule and optimiser --------------------------------------------------------------


def learning_rate(config: ml_collections.ConfigDict) -> optax.Schedule:
    """Linear warm-up from ``optim.warmup_lr`` to ``optim.lr``, then cosine decay to
    ``optim.min_lr`` (default 0 for both), all three scaled by ``batch_size / 512`` as the
    official ``train/main.py`` does."""
    o, scale = config.optim, config.batch_size / 512
    warmup = max(config.warmup_steps, 1)  # optax needs >= 1 warm-up and >= 1 decay step
    return optax.warmup_cosine_decay_schedule(
        o.get("warmup_lr", 0.0) * scale,
        o.lr * scale,
        warmup,
        max(config.total_steps, warmup + 1),
        end_value=o.get("min_lr", 0.0) * scale,
    )


def runtime_lr(count: jax.Array) -> jax.Array:
    """The schedule of the optimizer a train step updates with (:func:`build`): a unit step
    size, the learning rate being an argument of the compiled step (:func:`learning_rates`).
    The optimizer's state keeps its step count, as with the schedule inside, so checkpoints
    keep their structure."""
    del count
    return jnp.ones((), jnp.float32)


def learning_rates(config: ml_collections.ConfigDict) -> np.ndarray:
    """``float32[total_steps]``: :func:`learning_rate` at every step, evaluated once on the
    host. The compiled step takes its step's value as an argument, so a learning-rate grid,
    another warm-up or another step count reuses one compiled program."""
    steps = jnp.arange(max(config.total_steps, 1))
    return np.asarray(jax.vmap(learning_rate(config))(steps), np.float32)


DECAY_RULES = ("official", "timm")
# optim fields of the schedule, not of the optimizer that build() makes (runtime_lr).
_SCHEDULE_FIELDS = ("lr", "lr_grid", "warmup_lr", "min_lr")
_EMBEDDINGS = ("cls", "pos_embedding")


def decay_mask(params, rule: str = "official") -> Any:
    """Which parameters get weight decay (a pytree of bools like ``params``).

    ``'official'``: what the official 1p-frac run applies. timm's ``create_optimizer_v2``
    exempts 1-D parameters and biases, and would also exempt the model's
    ``no_weight_decay()`` names, but the official ``train/main.py`` passes it the
    DDP-wrapped model, which has no such method: the position embedding and the class token
    are decayed. So: every kernel, the class token and the position embedding.
    ``'timm'``: timm's intended grouping: kernels only.
    """
    if rule not in DECAY_RULES:
        raise ConfigError(f"optim.decay_rule={rule!r}: must be one of {DECAY_RULES}")
    names = ("kernel",) + (_EMBEDDINGS if rule == "official" else ())
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], "key", None) in names, params
    )


def make_optimizer(config: ml_collections.ConfigDict, schedule: optax.Schedule):
    """AdamW (pre-training, decoupled decay) or SGD with momentum (fine-tuning, coupled L2
    decay as torch's SGD; Nesterov with ``optim.nesterov``, timm's 'sgd'); weight decay on
    :func:`decay_mask`; optional gradient clipping."""
    o = config.optim
    rule = o.get("decay_rule", "official")
    mask = lambda params: decay_mask(params, rule)
    if o.name == "adamw":
        tx = optax.adamw(schedule, b1=o.b1, b2=o.b2, weight_decay=o.weight_decay, mask=mask)
    elif o.name == "sgd":
        tx = optax.chain(
            optax.add_decayed_weights(o.weight_decay, mask=mask),
            optax.sgd(schedule, momentum=o.momentum, nesterov=bool(o.get("nesterov", False))),
        )
    else:
        raise ConfigError(f"optim.name={o.name!r}: must be 'adamw' or 'sgd'")
    if o.grad_clip_norm:
        tx = optax.chain(optax.clip_by_global_norm(o.grad_clip_norm), tx)
    return tx


# ---- Config checks and stop signals ------------------------------------------------------


def validate(config: ml_collections.ConfigDict) -> None:
    """Check the run-level fields; sources, model and augmentation check their own."""
    config_utils.check_finite(config)
    keys.check_seed(config.seed)
    for name in (
        "batch_size",
        "total_steps",
        "log_every",
        "checkpoint_every",
        "keep_checkpoints",
        "eval_batch_size",
    ):
        if config[name] < 1:
            raise ConfigError(f"{name}={config[name]}: must be >= 1")
    if config.warmup_steps < 0:
        raise ConfigError(f"warmup_steps={config.warmup_steps}: must be >= 0")
    if config.optim.lr <= 0:
        raise ConfigError(f"optim.lr={config.optim.lr}: must be > 0")
    augment.validate(config.augment)
    sharding.check_param_sharding(config.get("param_sharding", "replicated"))
    if config.get("fsdp_min_size", 0) < 0:
        raise ConfigError(f"fsdp_min_size={config.fsdp_min_size}: must be >= 0")
    make_model(config, 1)  # the model block's own checks
    evals.validate(config)
    decay_mask({}, config.optim.get("decay_rule", "official"))


class _StopRequest:
    """SIGTERM / SIGINT set a flag that the loop reads at the next step boundary (a
    second signal gets the default behaviour). Handlers are only installed in the main
    thread, and restored on exit."""

    def __init__(self):
        self.signal = None
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signal = signal.Signals(signum).name
        signal.signal(signum, self._old.get(signum, signal.SIG_DFL))

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


# Processes agree on a stop request at least this often (and at every log or checkpoint
# step): one that stopped alone would save while the others wait in the next step's
# all-reduce.
STOP_SYNC_EVERY = 10


def _stop_agreed(stop: _StopRequest, done: int, boundary: bool) -> bool:
    """Whether to stop after step ``done``: this process's request on one host; on many, the
    same answer everywhere (any process's request), decided every :data:`STOP_SYNC_EVERY`
    steps and at ``boundary`` steps."""
    local = stop.signal is not None
    if jax.process_count() == 1:
        return local
    if not boundary and done % STOP_SYNC_EVERY:
        return False
    return bool(np.any(multihost_utils.process_allgather(np.int32(local))))


# ---- Programs kept for the next run in this process --------------------------------------

# Config fields that no compiled program reads: the seed, the learning rate and the step
# count are arguments of the step (step_inputs, learning_rates); the rest is the loop's.
# Runs that differ only in these (a learning-rate grid, a random init and a pre-trained one
# fine-tuned alike, a longer run) share one traced and compiled step.
PROGRAM_FREE_FIELDS = (
    "seed", "total_steps", "warmup_steps", "log_every", "checkpoint_every", "keep_checkpoints",
) + tuple(f"optim.{name}" for name in _SCHEDULE_FIELDS)  # fmt: skip
KEPT_PROGRAMS = 16  # entries: steps, models, optimizers; the oldest is dropped
_kept_programs: collections.OrderedDict = collections.OrderedDict()


def program_config(config: ml_collections.ConfigDict) -> str:
    """``config`` without :data:`PROGRAM_FREE_FIELDS`, as canonical JSON: equal for two
    runs whose programs are the same (a key of :func:`kept`)."""
    d = config.to_dict()
    for path in PROGRAM_FREE_FIELDS:
        *parents, leaf = path.split(".")
        node = d
        for name in parents:
            node = node.get(name, {})
        if isinstance(node, dict):
            node.pop(leaf, None)
    return _canonical(d)


def _canonical(d: dict) -> str:
    """A dict as canonical JSON (sorted keys; anything not JSON by its repr): a key part."""
    return json.dumps(d, sort_keys=True, default=repr)


def kept(key: tuple | None, make: Callable[[], Any]) -> Any:
    """``make()``, kept under ``key`` for the next call with an equal key in this process
    (least recently used first out, :data:`KEPT_PROGRAMS` at most); ``key=None``: not kept.

    A sweep point fine-tunes 8 times (two inits, two learning rates, two label budgets) and
    a fine-tuning evaluator once per interval: each run used to trace, lower and fetch from
    the compilation cache a step equal to the last one (seconds each). A jitted function
    kept here, with the model and optimizer it was traced with (a state holds both in its
    tree structure, so new but equal ones would trace again), is called again instead:
    JAX's own cache finds the program. Keys name everything a program reads that is not
    an argument (:func:`program_config`, the model, the source's ``program_key``)."""
    if key is None:
        return make()
    if key in _kept_programs:
        _kept_programs.move_to_end(key)
        return _kept_programs[key]
    value = _kept_programs[key] = make()
    while len(_kept_programs) > KEPT_PROGRAMS:
        _kept_programs.popitem(last=False)
    return value


def source_program_key(source) -> tuple | None:
    """What a source's compiled programs depend on besides its arrays (``program_key()``,
    which :class:`~fractaljax.downstream.ArraySource` has), or None: not kept."""
    key = getattr(source, "program_key", None)
    return None if key is None else key()


def abstract_source(source):
    """``source`` holding only the shapes of its arrays: what a kept step closes over (the
    step reads the arrays from its argument), so a kept program holds no device memory."""
    shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), source.arrays)
    return source.with_arrays(shapes)


def _program_of(kind: str, config, model, source, mesh, *more) -> tuple:
    """``(key, source)`` of a step program: the :func:`kept` key and the abstract source to
    close over, or ``(None, source)`` where the source has no ``program_key``."""
    skey = source_program_key(source)
    if skey is None:
        return None, source
    key = (kind, program_config(config), model, skey, mesh, *more)
    return key, abstract_source(source)


# ---- The step: render, augment, update (one jit) -----------------------------------------


def gray_crop(config: ml_collections.ConfigDict, source: Any) -> bool:
    """Whether the step crops the source's images from one channel: a gray source
    (:attr:`Source.gray`) and ``augment.gray_crop`` (a config without it: on)."""
    return source.gray and bool(config.augment.get("gray_crop", True))


def make_train_step(
    config, model, source, mesh, state_sharding=None, inputs: dict[str, Any] | None = None
) -> Callable:
    """``train_step(state, step, lr) -> (state, metrics)``, jit-compiled, batch sharded on
    mesh. ``lr`` is the learning rate at ``step`` (:func:`learning_rates`) and ``state.tx``
    an optimizer made with :func:`runtime_lr` (:func:`build`), which scales its update by it.

    The batch is a pure function of (seed, step) and each example's index in the global
    batch, and each device renders its own slice of it (on every process, the devices it
    owns): the same global batch whatever the number of devices and processes.
    ``state_sharding`` pins the new state's layout (that of :func:`init_state`).

    The compiled step takes the seed and the source's arrays as its ``inputs`` argument
    (:func:`step_inputs`, unless given), bound here with :func:`functools.partial`: one
    program for every seed and data set of the same shapes, which JAX's persistent cache
    serves to the next run (``.func.lower(state, step, lr, **.keywords)`` lowers it)."""
    batch_sharding = sharding.batch_sharded(mesh)
    continuous = head(config) == "mdn"
    # Donating the state halves its memory on accelerators; XLA's CPU backend ignores it.
    donate = () if jax.default_backend() == "cpu" else (0,)
    inputs = step_inputs(config, source, mesh) if inputs is None else inputs
    # Kept for the next run with equal programs (see kept).
    program, source = _program_of(
        "train", config, model, source, mesh, donate, _tree_key(state_sharding)
    )

    def train_step(state, step, lr, inputs):
        src = source.with_arrays(inputs["arrays"])  # the only source the step reads
        data_key = keys.stream(inputs["seed"], "data")
        step_key = keys.stream(inputs["seed"], "step")
        k_aug, k_drop = jax.random.split(jax.random.fold_in(step_key, step))
        if continuous:
            images, targets = src.latent_batch(data_key, step, config.batch_size)
        else:
            images, labels = src.batch(data_key, step, config.batch_size)
        # Constraining the images splits the rendering itself over the devices.
        images = jax.lax.with_sharding_constraint(images, batch_sharding)
        if continuous:
            # The generator's images as they are (resized): crops, flips and mixing would
            # change which u drew the image.
            x = model_input(config, src, observe(config, k_aug, images))
        else:
            x, targets = augment.augment_batch(
                k_aug,
                images,
                labels,
                src.num_classes,
                config.augment,
                input_size(config, src),
                gray=gray_crop(config, src),
            )

        def loss_fn(params):
            out, _ = model.apply({"params": params}, x, train=True, rngs={"dropout": k_drop})
            return head_loss(config, src, out, targets).mean(), out

        (loss, out), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        # The optimizer's own step size is -1 (runtime_lr); scaling by the argument here is
        # bit for bit what optax does with the schedule inside: (-lr) * update.
        updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
        updates = jax.tree.map(lambda u: lr.astype(u.dtype) * u, updates)
        state = state.replace(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            opt_state=opt_state,
        )
        metrics = {
            "loss": loss,
            "grad_norm": jnp.sqrt(
                sum(jnp.sum(g.astype(jnp.float32) ** 2) for g in jax.tree.leaves(grads))
            ),
            "lr": lr,
        }
        if not continuous:
            # Against the label of the unmixed image: a rough signal under mixup/cutmix.
            metrics["train_accuracy"] = jnp.mean(jnp.argmax(out, -1) == labels)
        return state, metrics

    out = None if state_sharding is None else (state_sharding, sharding.replicated(mesh))
    step_fn = kept(program, lambda: jax.jit(train_step, donate_argnums=donate, out_shardings=out))
    return functools.partial(step_fn, inputs=inputs)


def _tree_key(tree) -> tuple | None:
    """A hashable stand-in for a pytree of hashable leaves (shardings), or None."""
    if tree is None:
        return None
    leaves, treedef = jax.tree.flatten(tree)
    return tuple(leaves), treedef


def step_inputs(config, source, mesh) -> dict[str, Any]:
    """What a compiled step reads besides the state: the run's seed (its key streams) and the
    source's arrays, replicated on ``mesh`` (one copy for the train step and the fixed-batch
    check)."""
    return sharding.replicate({"seed": np.int32(config.seed), "arrays": source.arrays}, mesh)


def model_input(config, source, images: jax.Array) -> jax.Array:
    """Canvas images ``float32[B, H, W, C]`` -> the model's input (:func:`augment.model_input`
    at the config's input size and interpolation)."""
    size = input_size(config, source)
    return augment.model_input(images, size, augment.interpolation(config.augment))


def observe(config, key: jax.Array, images: jax.Array) -> jax.Array:
    """The observation model the 'mdn' head learns to invert: ``images + noise * z``,
    ``z ~ N(0, I)`` per pixel, clipped to [0, 1] as the inference code clips its inputs
    (``model.mdn_noise``; 0: the images as drawn). A proposal trained on the joint of
    latent and *observation* is one for the posterior that importance sampling targets."""
    noise = config.model.get("mdn_noise", 0.0)
    if not noise:
        return images
    return jnp.clip(images + noise * jax.random.normal(key, images.shape), 0.0, 1.0)


def head_loss(config, source, out: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-example loss of the head's outputs: LPCE against (soft) class targets, or the
    mixture density's negative log-likelihood of the multipliers ``u`` that drew the image
    (``model.head='mdn'``)."""
    if head(config) == "mdn":
        return mdn.nll(out, targets, source.delta, config.model.mdn_prior_share)
    return lpce(out, targets)


def make_eval_step(config, model, source, mesh, inputs: dict[str, Any] | None = None) -> Callable:
    """Clean (unaugmented) metrics on a fixed batch of the pre-training task: loss and
    top-1; with ``model.head='mdn'``, the loss and the error of the posterior mean of u in
    units of Delta (0.5 for a head that knows nothing, the prior's mean error)."""
    continuous = head(config) == "mdn"
    inputs = step_inputs(config, source, mesh) if inputs is None else inputs
    program, source = _program_of("eval", config, model, source, mesh)  # see kept

    def eval_step(params, inputs):
        key = keys.stream(inputs["seed"], "eval")
        src = source.with_arrays(inputs["arrays"])  # the only source the check reads
        if continuous:
            images, u = src.latent_batch(key, 0, config.eval_batch_size)
            images = observe(config, jax.random.fold_in(key, 2), images)
        else:
            images, labels = src.batch(key, 0, config.eval_batch_size)
        out, _ = model.apply({"params": params}, model_input(config, src, images))
        if not continuous:
            return {
                "eval_loss": lpce(out, labels).mean(),
                "eval_accuracy": jnp.mean(jnp.argmax(out, -1) == labels),
            }
        mix = mdn.split(out, u.shape[-1])
        keys_ = jax.random.split(jax.random.fold_in(key, 1), u.shape[0])
        means = jax.vmap(lambda k, m: mdn.mean(k, m, src.delta))(keys_, mix)
        return {
            "eval_loss": head_loss(config, src, out, u).mean(),
            "eval_error_over_delta": jnp.mean(jnp.abs(means - u)) / src.delta,
        }

    return functools.partial(kept(program, lambda: jax.jit(eval_step)), inputs=inputs)


# ---- State: initialisation, transfer, set-up of a run ------------------------------------


def init_key(seed: int | jax.Array) -> jax.Array:
    """The model-initialisation key of a run with ``seed``."""
    return keys.stream(seed, "init")


def init_state(
    config, model, tx, mesh, image_shape, abstract: bool = False
) -> train_state.TrainState:
    """The initial train state for inputs of ``image_shape`` (H, W, C) resized to
    :func:`input_size`, laid out on ``mesh`` as ``config.param_sharding`` says (created in
    place: on many hosts each process makes only its own shards). The seed is an argument
    of the compiled initialisation: one program for every seed. ``abstract``: the state's
    shapes, dtypes and shardings only (``jax.ShapeDtypeStruct`` leaves), nothing compiled
    or allocated, e.g. to trace a paper-size step on a laptop."""
    s = int(config.get("input_size") or image_shape[0])
    shape = (1, s, s, image_shape[-1])
    mode = config.get("param_sharding", "replicated")
    min_size = config.get("fsdp_min_size", sharding.FSDP_MIN_SIZE)

    def compile_init():
        def init(seed):
            params = model.init(init_key(seed), jnp.zeros(shape, jnp.float32))["params"]
            return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

        layout = sharding.state_shardings(jax.eval_shape(init, np.int32(0)), mesh, mode, min_size)
        return jax.jit(init, out_shardings=layout)

    # Kept by the model and optimizer objects (build keeps those): equal ones share it.
    init = kept(("init", model, tx, shape, mesh, mode, min_size), compile_init)
    seed = np.int32(config.seed)
    return jax.eval_shape(init, seed) if abstract else init(seed)


def _checkpointable(state: train_state.TrainState) -> dict[str, Any]:
    return {"step": state.step, "params": state.params, "opt_state": state.opt_state}


def transfer_params(init: dict, pretrained: dict) -> dict:
    """``init`` with every top-level module but the head taken from ``pretrained``."""
    return {
        k: (v if k == "head" or k not in pretrained else pretrained[k]) for k, v in init.items()
    }


# Images seen above which a run is paper-scale work, not a CPU job (the small recipe sees
# 154k, the paper's pre-training 61M).
CPU_IMAGE_BUDGET = 5_000_000


def warn_if_paper_scale_on_cpu(config: ml_collections.ConfigDict, start: int = 0) -> bool:
    """Print a warning (and return True) before a paper-scale run starts on a CPU."""
    images = (config.total_steps - start) * config.batch_size
    if jax.default_backend() != "cpu" or images <= CPU_IMAGE_BUDGET:
        return False
    print(
        f"warning: {config.total_steps - start:,} steps of batch {config.batch_size} "
        f"({config.model.variant}, {images / 1e6:.0f}M images) is paper-scale work and will "
        "take weeks on a CPU (the ETA is printed at the first log line); use a GPU/TPU "
        "(README: Paper scale on one GPU), or a CPU recipe such as configs/onepfrac.py:small",
        flush=True,
    )
    return True


def build(config, mesh, source=None, cache_dir: str | None = None, abstract_state: bool = False):
    """``(source, model, schedule, tx, state)`` of ``config``: what a train step needs, with
    no run directory (``source`` replaces ``sources.make``; ``cache_dir`` keeps its
    one-time searches). ``tx`` takes its learning rate from the step (:func:`runtime_lr`);
    ``schedule`` is the learning rate itself. ``abstract_state``: see :func:`init_state`."""
    # Checked before the source is built: a bank of images may take minutes to draw.
    name = config.source.name if source is None else source.name
    latent = name in sources.LATENT_SOURCES if source is None else hasattr(source, "latent_batch")
    if head(config) == "mdn" and not latent:
        raise ConfigError(
            f"model.head='mdn' needs a source with a continuous latent (1p-frac, "
            f"configs/onepfrac.py or configs/amortized.py); {name!r} has none"
        )
    source = source or sources.make(config, cache_dir=cache_dir)
    outputs = num_outputs(config, source.num_classes)
    # The same objects for equal model and optimizer fields: a state's tree structure holds
    # both, and kept programs are found by it (see kept).
    model_key = ("model", _canonical(config.model.to_dict()))
    model = kept(model_key + (outputs, input_size(config)), lambda: make_model(config, outputs))
    schedule = learning_rate(config)
    optim = {k: v for k, v in config.optim.to_dict().items() if k not in _SCHEDULE_FIELDS}
    optim_key = ("optimizer", _canonical(optim))
    tx = kept(optim_key, lambda: make_optimizer(config, runtime_lr))
    state = init_state(config, model, tx, mesh, source.image_shape, abstract_state)
    return source, model, schedule, tx, state


def _set_up(config, workdir, source, allow_changes, mesh):
    """Everything before the first step; bad input here leaves the workdir as it was."""
    run_dir.prepare(workdir)
    source, model, _, _, state = build(config, mesh, source, cache_dir=workdir)
    if getattr(source, "info", None):
        print(f"source {source.name}: {source.info}", flush=True)
    ckpt = Checkpoints(workdir, keep=config.keep_checkpoints)
    try:
        start, restored = ckpt.restore_latest(_checkpointable(state))
        if start:
            run_dir.check_resume(workdir, config, start, allow_changes)
    except UserError:
        ckpt.close()
        raise
    run_dir.write_source_record(workdir, source)  # what run_dir.load reads
    return source, model, state, ckpt, start, restored


# ---- The loop ----------------------------------------------------------------------------


class Trained(NamedTuple):
    """What :func:`run` hands back: the summary (as in ``summary.json``), and the trained
    model, its parameters (the final step's, as saved) and the source it trained on, for
    callers that go on to evaluate it without reading it back from disk."""

    summary: dict[str, Any]
    model: Any
    params: Any
    source: Any


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *args, **kw) -> dict:
    """:func:`run` (same arguments), returning its summary alone: the run's weights stay in
    ``workdir`` (``run_dir.load(workdir)`` reads them back)."""
    return run(config, workdir, *args, **kw).summary


def run(
    config: ml_collections.ConfigDict,
    workdir: str,
    stop_at: int | None = None,
    *,
    source=None,
    init_params: dict | None = None,
    allow_changes: bool = False,
    eval_source=None,
) -> Trained:
    """Train ``config`` in ``workdir`` (resuming from its latest checkpoint).

    ``stop_at`` ends this invocation early at that step (saving a checkpoint there), as a
    pre-emption would; the schedule still follows ``config.total_steps``. ``source``
    replaces ``sources.make(config)`` (fine-tuning passes labelled arrays, any object with
    ``batch(key, step, batch_size)``, ``num_classes``, ``image_shape``, ``arrays`` and
    ``with_arrays`` as :class:`~fractaljax.downstream.ArraySource`); ``init_params`` starts a
    new run from these weights, all but the head (:func:`transfer_params`). A resumed run must have
    the config it started with, up to :data:`run_dir.RESUME_SAFE_FIELDS`
    (:func:`run_dir.check_resume`); ``allow_changes`` lets any change through, recorded.
    The logged ``eval_*`` metrics are on a fixed batch of ``eval_source`` (default: the
    training source, unaugmented); ``config.evals`` adds evaluators (fractaljax.evals).

    SIGTERM or SIGINT (pre-emption, Ctrl-C) end the loop at the next step boundary with a
    checkpoint there, then raise :class:`~fractaljax.errors.Preempted`. A run that already
    reached ``total_steps`` returns the summary it wrote then (``summary.json``) and the
    parameters of its last checkpoint.

    Returns:
      :class:`Trained`: the summary (``first_loss``, ``last_loss``, eval metrics, ``steps``,
      ``seconds``, ``img_per_s``, ``step_time``), the model, its trained parameters and the
      source.
    """
    # Phase 1, set-up: checks, the source, the model and its state (new or restored), the
    # evaluators. Bad input here leaves no new workdir behind.
    validate(config)
    mesh = sharding.data_mesh()
    sharding.check_batch(config.batch_size, mesh)
    with removed_on_bad_input(workdir):  # a new workdir is removed again if set-up fails
        source, model, state, ckpt, start, restored = _set_up(
            config, workdir, source, allow_changes, mesh
        )
        finished = run_dir.read_summary(workdir) if start >= config.total_steps else None
        done_before = finished is not None and stop_at is None
        try:  # evaluators load their data here: a missing set is bad input, caught as such
            evaluators = (
                {} if done_before else evals.make(config, model, eval_source or source, workdir)
            )
        except UserError:
            ckpt.close()
            raise
    if done_before:
        ckpt.close()  # a finished run: its summary, not an empty one
        print(f"{workdir}: finished earlier at step {start}", flush=True)
        return Trained(finished, model, restored["params"], source)
    if start:
        state = state.replace(**restored)
        print(f"resumed from {ckpt.directory}/{start}", flush=True)
    else:  # a new run (or one killed before its first checkpoint): this config is its record
        run_dir.write_config(os.path.join(workdir, "config.json"), config)
    if start == 0 and init_params is not None:
        # On the layout init_state chose (FSDP shards, replicas): the weights come from
        # anywhere, and the step is compiled for, and kept by, that layout.
        layout = jax.tree.map(lambda x: x.sharding, state.params)
        state = state.replace(
            params=jax.device_put(transfer_params(state.params, init_params), layout)
        )
    n_params = sum(p.size for p in jax.tree.leaves(state.params))
    print(
        f"training {config.model.variant} ({n_params / 1e6:.2f}M params) on "
        f"{source.name} ({source.num_classes} classes, {source.image_shape[0]} px -> "
        f"{input_size(config, source)} px), batch "
        f"{config.batch_size}, steps {start}->{config.total_steps}, "
        f"{mesh.devices.size} {jax.devices()[0].platform} device(s), workdir {workdir}, "
        f"augmentation per image: {augment.per_image_mode(config.augment)}"
        f"{', crop from one channel (gray)' if gray_crop(config, source) else ''}",
        flush=True,
    )

    warn_if_paper_scale_on_cpu(config, start)
    layout = jax.tree.map(lambda x: x.sharding, state)
    if config.get("param_sharding", "replicated") != "replicated":
        print(
            f"param_sharding {config.param_sharding}: {sharding.split_fraction(state):.0%} "
            f"of the train state split over {mesh.devices.size} devices",
            flush=True,
        )
    # Phase 2, compile: the step and the fixed-batch check, once for every learning rate.
    inputs = step_inputs(config, source, mesh)  # the seed and the source's arrays
    train_step = make_train_step(config, model, source, mesh, layout, inputs)
    lrs = learning_rates(config)
    if eval_source is None:
        eval_step = make_eval_step(config, model, source, mesh, inputs)
    else:
        eval_step = make_eval_step(config, model, eval_source, mesh)
    writer = MetricWriter(workdir, active=sharding.is_primary())
    writer.truncate_after(start)  # rows past the checkpoint are written again
    summary: dict[str, Any] = {"steps": int(start)}
    history: list[dict[str, float]] = []
    t_start = t_log = time.perf_counter()
    step_log = start
    pending = None  # (step, metrics) dispatched but not yet checked

    def check(step: int, metrics) -> dict[str, float]:
        """Fetch a step's metrics; stop if its loss is not finite."""
        m = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if not np.isfinite(m["loss"]):
            ckpt.close()
            last = ckpt.latest_step()
            kept = f"the last good checkpoint is step {last}" if last else "no checkpoint saved"
            raise TrainingDiverged(
                f"loss became {m['loss']} at step {step} (lr {m['lr']:.3g}); {kept} in "
                f"{workdir}; lower optim.lr or set optim.grad_clip_norm, then rerun to resume"
            )
        summary.setdefault("first_loss", m["loss"])
        history.append(m)
        return m

    # Phase 3, the loop: a step per iteration; on log steps the metrics, the fixed batch and
    # the evaluators due; on checkpoint steps (and on a stop signal) a checkpoint.
    stack = contextlib.ExitStack()
    try:
        stop = stack.enter_context(_StopRequest())
        end = config.total_steps if stop_at is None else min(stop_at, config.total_steps)
        for step in range(start, end):
            state, metrics = train_step(state, jnp.int32(step), jnp.float32(lrs[step]))
            # Check the previous step while this one runs: one step of lag keeps the device
            # busy, and a NaN is still caught before anything is saved.
            if pending is not None:
                check(*pending)
            pending = (step, metrics)
            done = step + 1
            boundary = not (
                done % config.log_every and done % config.checkpoint_every and done < end
            )
            stopping = _stop_agreed(stop, done, boundary)
            if not boundary and not stopping:
                continue
            check(*pending)
            pending = None
            now = time.perf_counter()
            step_time = (now - t_log) / max(done - step_log, 1)
            row = {k: float(np.mean([h[k] for h in history])) for k in history[0]}
            row.update({k: float(v) for k, v in eval_step(state.params).items()})
            for run in evals.due(evaluators, done, config.total_steps).values():
                row.update(run(state.params))
            row.update(step_time=step_time, img_per_s=config.batch_size / step_time)
            eta = format_duration(step_time * (config.total_steps - done))
            writer.write(done, row, prefix=f"[{done / config.total_steps:4.0%} ETA {eta}] ")
            summary.update(row, last_loss=row["loss"], steps=done)
            history, step_log = [], done
            if done % config.checkpoint_every == 0 or done == end or stopping:
                ckpt.save(done, _checkpointable(state))
            t_log = time.perf_counter()  # step_time counts training steps, not evaluations
            if stopping:
                ckpt.close()  # waits for the save
                raise Preempted(
                    f"{stop.signal or 'a stop signal to another process'} at step {done}: "
                    f"checkpoint saved in {ckpt.directory}; rerun the same command to resume"
                )
    finally:
        stack.close()
        writer.close()
        ckpt.close()
    # Phase 4, the record: summary.json, which callers and a rerun read (the weights are read
    # back with run_dir.load: a run may have finished in another process or invocation).
    summary["seconds"] = time.perf_counter() - t_start
    run_dir.write_summary(workdir, summary)
    return Trained(summary, model, state.params, source)
