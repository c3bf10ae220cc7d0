"""Weights to and from timm: exact round trips without torch, logit parity with timm itself
(skipped, saying why, where torch/timm are absent; CI installs the `torch` extra)."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fractaljax import interop, run_dir
from fractaljax.errors import CheckpointError
from fractaljax.models import vit

try:
    import timm  # noqa: F401
    import torch  # noqa: F401

    HAVE_TIMM = True
except ImportError:  # torch or timm not installed
    HAVE_TIMM = False
# CI installs the `torch` extra and sets FRACTALJAX_REQUIRE_TORCH=1: there these tests run,
# and fail (on the import) if torch or timm are absent.
needs_timm = pytest.mark.skipif(
    not HAVE_TIMM and not os.environ.get("FRACTALJAX_REQUIRE_TORCH"),
    reason="torch/timm not installed: pip install -e '.[torch]'",
)


def random_model(variant, size, pool="tok", num_classes=7, seed=0, chans=3):
    """A ViT with every parameter random (the head too, so logits are not trivially 0)."""
    model = vit.make(variant, num_classes, size, pool=pool, head_zero_init=False)
    params = model.init(jax.random.key(seed), jnp.zeros((1, size, size, chans)))["params"]
    # Biases and LayerNorm scales start at constants: move them so a mix-up would show.
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    leaves = [x + 0.05 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    return model, jax.tree.map(np.asarray, jax.tree.unflatten(tree, leaves))


def flax_logits(model, params, x_nhwc):
    return np.asarray(model.apply({"params": params}, jnp.asarray(x_nhwc))[0])


def timm_logits(sd, arch, x_nhwc):
    import torch
    from timm.models.vision_transformer import VisionTransformer

    net = VisionTransformer(**interop.timm_kwargs(arch)).eval()
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sd.items()}, strict=True)
    with torch.no_grad():
        return net(torch.from_numpy(np.transpose(x_nhwc, (0, 3, 1, 2)).copy())).numpy()


SMALL = [("test/4", 16, "tok"), ("test/4", 16, "gap"), ("mu/8", 32, "tok"), ("mu/8", 32, "gap")]


@pytest.mark.parametrize("variant,size,pool", SMALL)
def test_round_trip_is_exact(variant, size, pool):
    _, params = random_model(variant, size, pool)
    back = interop.from_timm(interop.to_timm(params), params)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(back)):
        np.testing.assert_array_equal(a, b)
    assert jax.tree.structure(params) == jax.tree.structure(back)
    flat = interop.flatten(params)
    assert "block0/LayerNorm_0/scale" in flat and len(flat) == len(jax.tree.leaves(params))
    back = interop.unflatten(flat)
    assert jax.tree.structure(params) == jax.tree.structure(back)


def test_arch_and_timm_names():
    _, params = random_model("test/4", 16, "gap")
    arch = interop.arch_of(params)
    assert arch == dict(
        width=32, depth=2, num_heads=2, mlp_dim=64, patch_size=4, in_chans=3,
        pool="gap", img_size=16, num_classes=7,
    )  # fmt: skip
    assert interop.timm_name(arch) is None
    kw = interop.timm_kwargs(arch)
    assert kw["class_token"] is False and kw["global_pool"] == "avg" and kw["fc_norm"] is False
    ti = dict(arch, width=192, depth=12, num_heads=3, mlp_dim=768, patch_size=16, pool="tok")
    assert interop.timm_name(dict(ti, img_size=224)) == "vit_tiny_patch16_224"
    assert interop.timm_name(dict(ti, img_size=224, pool="gap")) is None


def test_another_architecture_is_a_one_line_error(tmp_path):
    from safetensors.numpy import save_file

    _, small = random_model("test/4", 16)
    _, other = random_model("mu/8", 32)
    path = tmp_path / "other.safetensors"
    save_file(interop.to_timm(other), str(path))
    with pytest.raises(CheckpointError, match="another size"):
        interop.load_timm(str(path), small)
    sd = interop.to_timm(small)
    del sd["blocks.1.attn.qkv.weight"]
    save_file(sd, str(path))
    with pytest.raises(CheckpointError, match="no tensor 'blocks.1.attn.qkv.weight'"):
        interop.load_timm(str(path), small)
    path.write_text("not safetensors")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        interop.load_timm(str(path), small)


# The four sizes of the parity checks: the test and mini ones, and timm's Ti/S/B 16 at 224.
PARITY = [
    ("test/4", 16, "tok"),
    ("test/4", 16, "gap"),
    ("mu/8", 32, "tok"),
    ("mu/8", 32, "gap"),
    ("Ti/16", 224, "tok"),
    ("S/16", 224, "tok"),
    ("B/16", 224, "tok"),
]


@needs_timm
@pytest.mark.parametrize("variant,size,pool", PARITY)
def test_logits_match_timm_both_ways(variant, size, pool, tmp_path):
    import timm
    import torch

    model, params = random_model(variant, size, pool)
    x = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype(np.float32)
    ref = flax_logits(model, params, x)
    assert np.abs(ref).max() > 0.1  # the head is not zero: parity is not trivial
    # Export: the file timm reads gives timm's model the Flax logits.
    path = tmp_path / "m.safetensors"
    meta = interop.save_timm(params, str(path))
    import safetensors.torch

    sd = {k: v.numpy() for k, v in safetensors.torch.load_file(str(path)).items()}
    got = timm_logits(sd, interop.arch_of(params), x)
    assert np.abs(got - ref).max() < 1e-4, np.abs(got - ref).max()
    if size == 224 and pool == "tok":
        assert meta["timm_model"] == interop.TIMM_NAMES[(model.width, 12, model.num_heads, 16)]
        named = timm.create_model(meta["timm_model"], pretrained=False, num_classes=7)
        named.load_state_dict(safetensors.torch.load_file(str(path)), strict=True)
    # Import: a timm model's own (random) weights, read into Flax, give timm's logits.
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    net = VisionTransformer(**interop.timm_kwargs(interop.arch_of(params))).eval()
    with torch.no_grad():  # timm inits the head to zero too; make it matter
        net.head.weight.normal_(0, 0.2)
    sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    with torch.no_grad():
        want = net(torch.from_numpy(np.transpose(x, (0, 3, 1, 2)).copy())).numpy()
    got = flax_logits(model, interop.from_timm(sd, params), x)
    assert np.abs(got - want).max() < 1e-4, np.abs(got - want).max()


@needs_timm
def test_export_cli_of_a_trained_run_loads_in_timm(run, tmp_path, tiny_run):
    out = tmp_path / "export" / "model.safetensors"
    res = run("experiments.export", f"--pretrained={tiny_run}", f"--out={out}")
    assert res.returncode == 0, res.stderr[-2000:]
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["num_classes"] == 10 and meta["mean"] == [0.5] * 3

    config, model, params = run_dir.load(str(tiny_run))
    x = np.random.default_rng(1).uniform(-1, 1, (3, 16, 16, 3)).astype(np.float32)
    import safetensors.torch

    sd = {k: v.numpy() for k, v in safetensors.torch.load_file(str(out)).items()}
    ref = flax_logits(model, params, x)
    got = timm_logits(sd, interop.arch_of(interop.unflatten(interop.flatten(params))), x)
    assert np.abs(ref).max() > 0  # trained for 10 steps: the head has moved from zero
    assert np.abs(got - ref).max() < 1e-4
    npz = tmp_path / "model.npz"
    res = run("experiments.export", f"--pretrained={tiny_run}", "--format=npz", f"--out={npz}")
    assert res.returncode == 0 and "block0/LayerNorm_0/scale" in np.load(npz).files


def test_export_then_import_gives_back_the_run(run, tmp_path, tiny_run):
    """experiments.export -> experiments.import_timm: the imported run's parameters are the
    original ones, bit for bit; a file of another architecture is one line, exit 2."""

    out = tmp_path / "m.safetensors"
    res = run("experiments.export", f"--pretrained={tiny_run}", f"--out={out}")
    assert res.returncode == 0, res.stderr[-2000:]
    model_flags = [
        "--config=configs/onepfrac.py:mini",
        "--config.model.variant=test/4",
        "--config.render.image_size=16",
    ]
    res = run(
        "experiments.import_timm", f"--weights={out}", f"--workdir={tmp_path / 'imp'}", *model_flags
    )
    assert res.returncode == 0, res.stderr[-2000:]
    _, _, a = run_dir.load(str(tiny_run))
    _, _, b = run_dir.load(str(tmp_path / "imp"))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    bad = [*model_flags[:2], "--config.model.variant=mu/8", "--config.render.image_size=16"]
    res = run("experiments.import_timm", f"--weights={out}", f"--workdir={tmp_path / 'x'}", *bad)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and "another size" in lines[0], res.stderr
    assert not (tmp_path / "x").exists()


@needs_timm
@pytest.mark.parametrize("pool", ["tok", "gap"])
def test_timm_init_matches_timms_own_init(pool):
    """model.init='timm': every tensor has the spread of timm's own initialisation."""
    import torch
    from timm.models.vision_transformer import VisionTransformer

    model = vit.make("Ti/16", 10, 224, pool=pool, init="timm")
    params = model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)))["params"]
    ours = interop.to_timm(jax.tree.map(np.asarray, params))
    torch.manual_seed(0)
    net = VisionTransformer(
        **interop.timm_kwargs(interop.arch_of(jax.tree.map(np.asarray, params)))
    )
    theirs = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    assert set(ours) == set(theirs)
    for k, a in ours.items():
        b = theirs[k]
        if b.std() == 0:  # constants: zeros and ones
            np.testing.assert_array_equal(a, b, err_msg=k)
        else:
            assert abs(a.std() / b.std() - 1) < 0.15, (k, a.std(), b.std())
            assert abs(a.mean()) < 5 * b.std() / np.sqrt(a.size) + 1e-7, k  # centred
    # ... and not the default's: its head is zero, its MLP kernels Xavier (std 0.036 here).
    default = vit.make("Ti/16", 10, 224, pool=pool).init(
        jax.random.key(0), jnp.zeros((1, 224, 224, 3))
    )["params"]
    assert float(jnp.abs(default["head"]["kernel"]).max()) == 0.0
    assert float(params["head"]["kernel"].std()) == pytest.approx(0.02, rel=0.1)


def test_public_api_example_runs(tmp_path):
    """The example of fractaljax/__init__.py, on a small source."""
    import fractaljax as fj
    from configs import onepfrac

    config = onepfrac.get_config("mini")
    config.source.num_classes = 10
    source = fj.make_source(config)
    images, labels = source.batch(jax.random.key(0), 0, 8)
    model = fj.make_model(config, source.num_classes)
    params = model.init(jax.random.key(1), images)["params"]
    logits, _ = model.apply({"params": params}, fj.normalize(images))
    loss = fj.lpce(logits, labels).mean()
    assert abs(float(loss) - np.log(10)) < 1e-5  # the zero head: uniform predictions
    feats = fj.extract_features(model, params, images)
    assert feats["pre_logits"].shape == (8, 128)
    meta = fj.save_timm(params, str(tmp_path / "m.safetensors"))
    assert meta["num_classes"] == 10
    back = fj.load_timm(str(tmp_path / "m.safetensors"), jax.tree.map(np.asarray, params))
    np.testing.assert_array_equal(back["head"]["kernel"], np.asarray(params["head"]["kernel"]))
    assert set(fj.__all__) <= set(dir(fj))
    import types

    for name in ("render", "sources", "ifs", "inference", "interop", "train"):  # still modules
        assert isinstance(getattr(fj, name), types.ModuleType), name


def test_import_fractaljax_stays_light():
    """``import fractaljax`` loads neither orbax nor TensorBoard's writer (the training
    loop and the run directory load them on first use), and the lazy names still work."""
    code = (
        "import sys, fractaljax as fj\n"
        "heavy = sorted(m for m in ('orbax', 'tensorboardX') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "assert callable(fj.train_and_evaluate) and callable(fj.load_pretrained)\n"
        "assert 'orbax' in sys.modules and fj.train.__name__ == 'fractaljax.train'\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]


def test_load_reads_the_parameters_alone_and_they_are_the_checkpoints(tiny_run):
    """run_dir.load returns the latest checkpoint's parameters (equal to a full restore of
    the train state) with no optimiser built; another step gives other parameters; a step
    that was never saved is a CheckpointError."""
    from test_train import tiny_config

    from fractaljax import train
    from fractaljax.checkpoint import Checkpoints

    config, model, params = run_dir.load(str(tiny_run))
    source, _, _, _, state = train.build(config, jax.sharding.Mesh(jax.devices()[:1], ("data",)))
    ckpt = Checkpoints(str(tiny_run))
    steps = ckpt.all_steps()
    full = ckpt.restore(steps[-1], train._checkpointable(state))
    ckpt.close()
    jax.tree.map(np.testing.assert_array_equal, params, full["params"])
    assert config.total_steps == tiny_config().total_steps
    assert steps == [5, 10]  # checkpoint_every 5 of 10 steps
    _, _, earlier = run_dir.load(str(tiny_run), step=5)
    assert not np.array_equal(earlier["head"]["kernel"], params["head"]["kernel"])
    with pytest.raises(
        CheckpointError, match=r"no checkpoint of step 10000; saved steps: \[5, 10\]"
    ):
        run_dir.load(str(tiny_run), step=10_000)
    # The library names the directory; the CLI adds its flag (test_bad_input).
    with pytest.raises(CheckpointError, match=r"^/nonexistent/run: no config.json there"):
        run_dir.load("/nonexistent/run")
