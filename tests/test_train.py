import json
import os
import re

import jax
import numpy as np
import optax
import pytest
from conftest import run_modules, xla_devices

from configs import fractaldb, onepfrac, real_image
from fractaljax import augment, sharding, sources, train
from fractaljax.checkpoint import Checkpoints
from fractaljax.errors import ConfigError
from fractaljax.losses import lpce
from fractaljax.metrics import read_jsonl

# A config small enough to compile and run in seconds on a CPU.
TINY = {
    "source.num_classes": 10,
    "render.image_size": 16,
    "render.walkers": 64,
    "render.steps": 16,
    "render.pad": 1,
    "source.diverge_steps": 2000,
    "model.variant": "test/4",
    "batch_size": 16,
    "eval_batch_size": 16,
    "total_steps": 10,
    "warmup_steps": 2,
    "log_every": 5,
    "checkpoint_every": 5,
}
TINY_FLAGS = [f"--config.{k}={v}" for k, v in TINY.items()]


def tiny_config(**overrides):
    c = onepfrac.get_config("mini")
    c.update_from_flattened_dict({**TINY, **overrides})
    return c


def _params_at_init():
    """The checkpointed part of the initial train state of ``tiny_config()``."""
    *_, state = train.build(tiny_config(), sharding.data_mesh())
    return train._checkpointable(state)


def _params(workdir, step):
    ck = Checkpoints(str(workdir))
    restored = ck.restore(step, _params_at_init())
    ck.close()
    return restored


def _decayed(rule):
    c = onepfrac.get_config("mini")
    c.model.variant = "test/4"
    model = train.make_model(c, 10)
    params = jax.eval_shape(model.init, jax.random.key(0), jax.numpy.zeros((1, 32, 32, 3)))
    mask = train.decay_mask(params["params"], rule)
    flat = jax.tree_util.tree_flatten_with_path(mask)[0]
    return {"/".join(str(getattr(k, "key", k)) for k in path) for path, on in flat if on}


def test_weight_decay_groups_official_and_timm():
    """Official (timm through a DDP wrapper): kernels, class token and position embedding;
    timm's intended grouping: kernels only. Never biases or norm scales."""
    official, timm = _decayed("official"), _decayed("timm")
    assert official - timm == {"cls", "pos_embedding"}
    assert all(name.endswith("kernel") for name in timm)
    assert "embedding/kernel" in timm and "head/kernel" in timm
    assert any("MultiHeadDotProductAttention" in n and "query/kernel" in n for n in timm)
    assert not any(n.endswith(("bias", "scale")) for n in official)
    with pytest.raises(ConfigError, match="optim.decay_rule"):
        _decayed("none")


def test_schedule_warmup_and_floor_scale_with_the_batch():
    c = tiny_config(
        **{"optim.lr": 1e-3, "optim.warmup_lr": 1e-6, "optim.min_lr": 1e-5, "batch_size": 256}
    )
    c.total_steps, c.warmup_steps = 100, 10
    lr = train.learning_rate(c)
    np.testing.assert_allclose(float(lr(0)), 5e-7, rtol=1e-5)
    np.testing.assert_allclose(float(lr(10)), 5e-4, rtol=1e-5)
    np.testing.assert_allclose(float(lr(100)), 5e-6, rtol=1e-4)
    # One step and no warm-up is a valid run (optax alone refuses a zero-length decay).
    c.total_steps, c.warmup_steps = 1, 0
    assert np.isfinite(float(train.learning_rate(c)(0)))


def test_one_compiled_step_serves_every_learning_rate_step_count_and_seed():
    """The learning rate, the seed and the source's arrays are arguments of the compiled
    step: configs that differ in lr, warm-up, step count or seed (a new data set) lower to
    one program (an lr grid or a seed sweep compiles once, and a later run finds it in the
    persistent cache), and the update is the one optax makes with the learning rate inside
    the optimizer."""
    c = tiny_config()
    mesh = sharding.data_mesh()
    src, model, _, _, state = train.build(c, mesh)
    other = tiny_config(**{"optim.lr": 0.5, "total_steps": 9, "warmup_steps": 3})
    seed1 = tiny_config(seed=1)
    src1 = sources.make(seed1)
    assert not np.array_equal(src1.arrays["systems"].maps, src.arrays["systems"].maps)

    def program(cfg, source):
        step = train.make_train_step(cfg, model, source, mesh)
        args = (state, jax.numpy.int32(0), jax.numpy.float32(0.1))
        return step.func.lower(*args, **step.keywords).as_text()

    assert program(c, src) == program(other, src) == program(seed1, src1)
    lrs = train.learning_rates(c)
    np.testing.assert_allclose(lrs, [float(train.learning_rate(c)(i)) for i in range(len(lrs))])
    lr = float(lrs[1])
    inside = state.replace(tx=train.make_optimizer(c, lambda count: lr))
    step = train.make_train_step(c, model, src, mesh)
    ours, metrics = step(state, 1, lr)
    theirs, _ = step(inside, 1, 1.0)
    assert float(metrics["lr"]) == np.float32(lr)
    for a, b in zip(jax.tree.leaves(ours.params), jax.tree.leaves(theirs.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    moved = jax.tree.leaves(
        jax.tree.map(lambda a, b: float(abs(a - b).max()), ours.params, state.params)
    )
    assert max(moved) > 0


def test_steps_on_a_fixed_batch_reduce_the_loss():
    c = tiny_config()
    src = sources.make(c)
    model = train.make_model(c, src.num_classes)
    schedule = optax.constant_schedule(1e-3)
    tx = train.make_optimizer(c, schedule)
    state = train.init_state(c, model, tx, sharding.data_mesh(), src.image_shape)
    images, labels = src.batch(jax.random.key(0), 0, 16)
    x = augment.normalize(images)

    @jax.jit
    def step(state):
        def loss_fn(p):
            return lpce(model.apply({"params": p}, x)[0], labels).mean()

        loss, g = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=g), loss

    losses = []
    for _ in range(15):
        state, loss = step(state)
        losses.append(float(loss))
    assert losses[-1] < losses[0] - 0.3, losses


def test_short_run_loss_falls_and_writes_outputs(tmp_path):
    # Distinct classes (Delta 0.5) and no augmentation: a 60-step signal that must show.
    no_aug = {
        "augment.mix_prob": 0.0,
        "augment.erase_prob": 0.0,
        "augment.hflip": 0.0,
        "augment.vflip": 0.0,
        "augment.color_jitter": 0.0,
        "augment.label_smoothing": 0.0,
    }
    c = tiny_config(
        total_steps=60,
        log_every=20,
        checkpoint_every=30,
        **{"optim.lr": 0.1, "source.delta": 0.5, **no_aug},
    )
    summary = train.train_and_evaluate(c, str(tmp_path))
    assert summary["steps"] == 60
    assert summary["last_loss"] < summary["first_loss"] - 0.3, summary
    for name in ("config.json", "metrics.jsonl", "summary.json"):
        assert (tmp_path / name).exists()
    rows = read_jsonl(str(tmp_path / "metrics.jsonl"))
    assert [r["step"] for r in rows] == [20, 30, 40, 60]  # log_every 20, checkpoint_every 30
    assert rows[-1]["loss"] == pytest.approx(summary["last_loss"])
    assert any(f.startswith("events") for f in os.listdir(tmp_path / "tb"))
    assert Checkpoints(str(tmp_path)).latest_step() == 60


def test_resume_is_bit_identical(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train.train_and_evaluate(tiny_config(total_steps=20), str(straight))
    train.train_and_evaluate(tiny_config(total_steps=20), str(split), stop_at=10)
    train.train_and_evaluate(tiny_config(total_steps=20), str(split))  # resumes at 10
    a, b = _params(straight, 20), _params(split, 20)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert int(b["step"]) == 20
    # A finished run, asked again, trains nothing and returns the summary it wrote.
    again = train.train_and_evaluate(tiny_config(total_steps=20), str(straight))
    assert again == json.loads((straight / "summary.json").read_text())
    assert again["steps"] == 20 and np.isfinite(again["last_loss"])
    assert Checkpoints(str(straight)).latest_step() == 20


def test_paper_scale_on_a_cpu_is_warned_about(capsys):
    assert train.warn_if_paper_scale_on_cpu(onepfrac.get_config("vit_ti"))
    assert "paper-scale work and will take weeks on a CPU" in capsys.readouterr().out
    for recipe in ("small", "mini"):
        assert not train.warn_if_paper_scale_on_cpu(onepfrac.get_config(recipe))
    # Resuming near the end is no longer paper-scale work.
    assert not train.warn_if_paper_scale_on_cpu(onepfrac.get_config("vit_ti"), start=239_990)


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path):
    c = tiny_config(
        total_steps=40, checkpoint_every=1, log_every=1, warmup_steps=20, **{"optim.lr": 1e9}
    )
    with pytest.raises(train.TrainingDiverged, match="loss became") as e:
        train.train_and_evaluate(c, str(tmp_path))
    last = Checkpoints(str(tmp_path)).latest_step()
    assert last is not None and f"last good checkpoint is step {last}" in str(e.value)
    params = _params(tmp_path, last)
    assert all(np.isfinite(np.asarray(p)).all() for p in jax.tree.leaves(params))


def test_data_parallel_matches_one_device(tmp_path):
    """The same global batch on 1 and 8 virtual CPU devices, and on 8 with FSDP: same
    losses at every logged step and the same parameters after training (an FSDP checkpoint
    restored replicated), within float tolerance (the batch is split, the gradient
    all-reduced; only the summation order differs)."""
    # A learning rate large enough that 6 steps move the parameters well past the tolerance.
    flags = [*TINY_FLAGS, "--config.total_steps=6", "--config.log_every=2", "--config.optim.lr=0.1"]
    # One device would map the augmentation image by image ('auto'), eight vmap it: the same
    # images but for float rounding, which RandAugment's 8-bit levels can widen.
    flags += ["--config.augment.per_image=vmap"]
    # "fsdp": 8 devices with the parameters and Adam moments split over them too (every
    # array of the tiny model with >= 256 elements; the default threshold is for real ViTs).
    fsdp = ["--config.param_sharding=fsdp", "--config.fsdp_min_size=256"]
    counts = (1, 8, "fsdp")  # 2 devices: tests/test_bad_input.py, test_render.py
    commands = [
        (
            "experiments.pretrain",
            [f"--workdir={tmp_path / str(n)}", *flags, *(fsdp if n == "fsdp" else [])],
            xla_devices(8 if n == "fsdp" else n),
        )
        for n in counts
    ]
    (tmp_path / "out").mkdir()
    for n, res in zip(counts, run_modules(commands, str(tmp_path / "out"))):
        assert res.returncode == 0, res.stderr[-2000:]
        assert f"{8 if n == 'fsdp' else n} cpu device(s)" in res.stdout
    split = re.search(r"param_sharding fsdp: (\d+)% of the train state split", res.stdout)
    assert split and int(split.group(1)) >= 50, res.stdout
    init = _params_at_init()
    one = _params(tmp_path / "1", 6)
    rows = read_jsonl(str(tmp_path / "1" / "metrics.jsonl"))
    ref = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    assert ref[-1][0] == 6 and len(ref) >= 3
    moved = max(
        float(np.abs(np.asarray(a) - np.asarray(p0)).max())
        for a, p0 in zip(jax.tree.leaves(one["params"]), jax.tree.leaves(init["params"]))
    )
    assert moved > 1e-3, moved  # training moved the parameters, so agreeing is not trivial
    for n in counts[1:]:
        rows = read_jsonl(str(tmp_path / str(n) / "metrics.jsonl"))
        got = [(r["step"], r["loss"]) for r in rows if "loss" in r]
        assert [s for s, _ in got] == [s for s, _ in ref], n
        np.testing.assert_allclose([v for _, v in got], [v for _, v in ref], rtol=1e-4)
        many = _params(tmp_path / str(n), 6)
        assert int(many["step"]) == 6
        flat = jax.tree_util.tree_flatten_with_path(one["params"])[0]
        for (path, a), b in zip(flat, jax.tree.leaves(many["params"])):
            # The attention key bias has an exactly zero gradient (softmax is invariant to
            # q.b, constant over keys); Adam turns its rounding noise into 1e-5-sized
            # moves that differ with the summation order, so it is not compared.
            if "key" in jax.tree_util.keystr(path) and "bias" in jax.tree_util.keystr(path):
                continue
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-5)


def test_corrupt_checkpoint_is_an_error_exit_2(run, tmp_path):
    res = run(
        "experiments.pretrain", f"--workdir={tmp_path}", *TINY_FLAGS, "--config.total_steps=5"
    )
    assert res.returncode == 0, res.stderr[-2000:]
    meta = tmp_path / "checkpoints" / "5" / "default" / "_METADATA"
    meta.write_text("garbage")
    res = run(
        "experiments.pretrain", f"--workdir={tmp_path}", *TINY_FLAGS, "--config.total_steps=10"
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no readable checkpoint"), lines
    assert meta.exists()  # left in place for the user to inspect


# The other sources differ from 1p-frac only in what batch() draws (tested in
# test_sources.py); FractalDB also caches its category search in the workdir.
def test_fractaldb_pretrains_and_caches_its_categories_in_the_workdir(tmp_path):
    from test_sources import SMALL_SEARCH  # the search on a 64 px canvas, 8k points

    c = fractaldb.get_config("mini")
    c.update_from_flattened_dict(
        {**TINY, **SMALL_SEARCH, "source.num_classes": 8, "total_steps": 6}
    )
    summary = train.train_and_evaluate(c, str(tmp_path))
    assert summary["steps"] == 6 and np.isfinite(summary["last_loss"])
    assert json.loads((tmp_path / "config.json").read_text())["source"]["name"] == "fractaldb"
    assert any(f.startswith("ifs_categories_") for f in os.listdir(tmp_path))


def test_bad_source_config_writes_no_config_json(tmp_path):
    c = real_image.get_config("mini")
    c.update_from_flattened_dict({**TINY, "source.perturbation": "shear"})
    with pytest.raises(ConfigError, match="source.perturbation"):
        train.train_and_evaluate(c, str(tmp_path))
    assert not (tmp_path / "config.json").exists()  # a fixed rerun starts from its own config


def _paper_step(c, abstract_state=False):
    """The train step of config ``c`` built as train_and_evaluate builds it."""
    mesh = sharding.data_mesh()
    src, model, _, _, state = train.build(c, mesh, abstract_state=abstract_state)
    return train.make_train_step(c, model, src, mesh), state


def test_the_paper_step_traces_at_full_size_and_runs_reduced_in_bfloat16():
    """The paper's step (512 px canvas cropped to 224 px, RandAugment, erasing, mixup/cutmix,
    drop-path, ViT-Ti/16) is traced at full size without running it; the same pipeline runs
    one step at a reduced size in bfloat16 with a finite loss."""
    c = onepfrac.get_config("vit_ti")
    c.source.num_classes, c.batch_size = 4, 2  # L and the batch do not change the program
    c.source.bank = True
    step, state = _paper_step(c, abstract_state=True)  # ViT-Ti's init traced, not compiled
    out_state, metrics = jax.eval_shape(step, state, 0, 1e-3)
    assert jax.tree.structure(out_state.params) == jax.tree.structure(state.params)
    shapes = lambda t: [(x.shape, x.dtype) for x in jax.tree.leaves(t)]
    assert shapes(out_state.params) == shapes(state.params)
    assert state.params["embedding"]["kernel"].shape == (16, 16, 3, 192)  # ViT-Ti/16
    assert metrics["loss"].shape == ()
    # Reduced: a 64 px canvas cropped to 32 px, the test model, bfloat16; every augmentation on.
    c.render.image_size, c.render.pad, c.input_size = 64, 2, 32
    c.render.walkers, c.render.steps = 64, 16
    c.model.variant, c.model.dtype, c.batch_size = "test/4", "bfloat16", 8
    step, state = _paper_step(c)
    assert c.augment.randaugment and c.augment.mix_prob == 1.0 and c.model.drop_path > 0
    state, metrics = step(state, 0, 1e-3)
    assert np.isfinite(float(metrics["loss"])), metrics
