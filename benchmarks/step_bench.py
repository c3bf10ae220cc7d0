"""Train-step speed of fractaljax against a plain Flax ViT and timm, side by side in one run.

  python benchmarks/step_bench.py [--variant Ti/16] [--size 224] [--batch 32] [--steps 3]
      [--rounds 4] [--dtype float32|bfloat16] [--skip timm]

Five steps of the same ViT (forward, backward, AdamW), timed one after the other:
  plain Flax   a ViT written the Flax-examples way (below), softmax cross-entropy, fixed
               images: the reference a JAX user would write;
  fj model     fractaljax's ViT, LPCE and optimiser (``train.make_optimizer``), the same
               fixed images, no augmentation: the model path alone;
  fj full      fractaljax's whole train step (``train.make_train_step``, the paper's
               recipe): 1p-frac rendered in the step on the 512 px canvas, random resized
               crop, flips, RandAugment, erasing, mixup/cutmix, drop-path, with the
               defaults (``augment.per_image`` and ``render.rasterizer`` 'auto': one image
               at a time on a single CPU device, vmapped elsewhere; the gray fractal's crop
               resampled from one channel);
  fj before    the same step as the stored sweeps ran it: ``augment.per_image='vmap'``
               (every RandAugment family and the erasing noise computed for every image),
               ``render.rasterizer='scatter'`` (the batch rasterised at once) and the crop
               resampled from all three channels;
  timm         timm's ``VisionTransformer`` of the same shape, PyTorch AdamW (if installed).
All five are compiled and warmed up first, then timed in --rounds interleaved rounds of
--steps steps each (a shared or throttled machine drifts; interleaving spreads the drift over
all five). Prints img/s from the median step time and the ratios. Meant for one device (run it with
one visible GPU, or on the CPU): only the full step splits its batch over devices.
"""

from __future__ import annotations

import argparse
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from configs import onepfrac
from fractaljax import losses, sharding, train
from fractaljax.models import vit


class PlainBlock(nn.Module):
    heads: int
    mlp_dim: int
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x):
        y = nn.LayerNorm(dtype=self.dtype)(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads, dtype=self.dtype)(y, y)
        y = nn.LayerNorm(dtype=self.dtype)(x)
        y = nn.Dense(self.mlp_dim, dtype=self.dtype)(y)
        y = nn.Dense(x.shape[-1], dtype=self.dtype)(nn.gelu(y, approximate=False))
        return x + y


class PlainViT(nn.Module):
    """A ViT as a JAX user writes it from the Flax examples: nothing but the model."""

    num_classes: int
    patch: int
    width: int
    depth: int
    mlp_dim: int
    heads: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(self.width, (self.patch,) * 2, strides=(self.patch,) * 2, dtype=self.dtype)(x)
        b, h, w, d = x.shape
        x = x.reshape(b, h * w, d)
        cls = self.param("cls", nn.initializers.zeros, (1, 1, d))
        x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, d)).astype(x.dtype), x], 1)
        x = x + self.param("pos", nn.initializers.normal(0.02), (1, h * w + 1, d))
        for _ in range(self.depth):
            x = PlainBlock(self.heads, self.mlp_dim, self.dtype)(x)
        x = nn.LayerNorm(dtype=self.dtype)(x)[:, 0]
        return nn.Dense(self.num_classes)(x.astype(jnp.float32))


class Timed:
    """``state = step(state, i)`` called repeatedly; :meth:`run` records each call's time."""

    def __init__(self, step, state):
        self.step, self.state, self.i, self.times = step, step(state, 0), 1, []  # compiles
        jax.block_until_ready(self.state)

    def run(self, steps: int) -> None:
        for _ in range(steps):
            t0 = time.perf_counter()
            self.state = jax.block_until_ready(self.step(self.state, self.i))
            self.times.append(time.perf_counter() - t0)
            self.i += 1

    def median(self) -> float:
        return float(np.median(self.times))


def plain_flax(args, images, labels, num_classes, dtype) -> Timed:
    a = vit.parse_variant(args.variant)
    model = PlainViT(
        num_classes, a["patch_size"], a["width"], a["depth"], a["mlp_dim"], a["num_heads"], dtype
    )
    params = model.init(jax.random.key(0), images[:1])
    tx = optax.adamw(1e-4, weight_decay=0.05)

    @jax.jit
    def step(state, i):
        params, opt = state

        def loss_fn(p):
            logits = model.apply(p, images)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        grads = jax.grad(loss_fn)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt

    return Timed(step, (params, tx.init(params)))


def fj_model(args, config, images, labels, num_classes) -> Timed:
    """fractaljax's model, loss and optimiser on fixed images (no rendering, no augmentation)."""
    model = train.make_model(config, num_classes)
    tx = train.make_optimizer(config, train.learning_rate(config))
    mesh = sharding.data_mesh()
    state = train.init_state(config, model, tx, mesh, images.shape[1:])
    targets = jax.nn.one_hot(labels, num_classes)

    @jax.jit
    def step(state, i):
        k = jax.random.fold_in(jax.random.key(1), i)

        def loss_fn(p):
            logits, _ = model.apply({"params": p}, images, train=True, rngs={"dropout": k})
            return losses.lpce(logits, targets).mean()

        return state.apply_gradients(grads=jax.grad(loss_fn)(state.params))

    return Timed(step, state)


def fj_full(args, config, before: bool = False) -> Timed:
    config = config.copy_and_resolve_references()
    if before:
        config.augment.per_image, config.render.rasterizer = "vmap", "scatter"
        config.augment.gray_crop = False
    mesh = sharding.data_mesh()
    source, model, _, _, state = train.build(config, mesh)
    train_step = train.make_train_step(config, model, source, mesh)
    lrs = train.learning_rates(config)
    return Timed(lambda s, i: train_step(s, jnp.int32(i), lrs[i % len(lrs)])[0], state)


def timm_step(args, num_classes) -> Timed | None:
    try:
        import timm
        import torch
    except ImportError:
        return None
    a = vit.parse_variant(args.variant)
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=args.size, patch_size=a["patch_size"], embed_dim=a["width"], depth=a["depth"],
        num_heads=a["num_heads"], mlp_ratio=a["mlp_dim"] / a["width"], num_classes=num_classes,
        drop_path_rate=0.1,
    )  # fmt: skip
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    x = torch.rand(args.batch, 3, args.size, args.size)
    y = torch.randint(0, num_classes, (args.batch,))
    model.train()

    def step(state, i):
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        return state

    return Timed(step, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="Ti/16")
    parser.add_argument("--size", type=int, default=224, help="model input side")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="steps per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--dtype", default="float32", choices=sorted(train.DTYPES))
    parser.add_argument(
        "--skip", default="", help="comma-separated: plain,model,full,full_before,timm"
    )
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    config = onepfrac.get_config("vit_ti")  # the paper's recipe, resized to these settings
    config.model.variant, config.model.dtype = args.variant, args.dtype
    config.batch_size, config.input_size = args.batch, args.size
    config.source.num_classes = args.classes
    dtype = train.DTYPES[args.dtype]
    images = jax.random.uniform(jax.random.key(0), (args.batch, args.size, args.size, 3))
    labels = jnp.arange(args.batch) % args.classes
    dev = jax.devices()[0]
    print(
        f"ViT-{args.variant} ({args.dtype}), {args.size} px, batch {args.batch}, "
        f"{args.classes} classes; {jax.device_count()} x {dev.platform} ({dev.device_kind})"
    )
    runs = {
        "plain": ("plain Flax", lambda: plain_flax(args, images, labels, args.classes, dtype)),
        "model": ("fj model", lambda: fj_model(args, config, images, labels, args.classes)),
        "full": ("fj full", lambda: fj_full(args, config)),
        "full_before": ("fj before", lambda: fj_full(args, config, before=True)),
        "timm": ("timm", lambda: timm_step(args, args.classes)),
    }
    timed = {}
    for key, (name, fn) in runs.items():
        if key not in skip:
            timed[key] = fn()  # built, compiled, warmed up
            if timed[key] is None:
                print(f"  {name:<11} skipped: pip install -e '.[torch]' for timm")
                del timed[key]
    for _ in range(args.rounds):
        for t in timed.values():
            t.run(args.steps)
    times = {key: t.median() for key, t in timed.items()}
    for key, t in times.items():
        spread = np.percentile(timed[key].times, [25, 75]) * 1000
        print(
            f"  {runs[key][0]:<12} {t * 1000:8.1f} ms/step (IQR {spread[0]:.0f}-{spread[1]:.0f})"
            f"  {args.batch / t:7.1f} img/s"
        )
    pairs = [
        ("model", "plain"),
        ("full", "plain"),
        ("full_before", "plain"),
        ("full", "full_before"),
    ]
    for a, b in pairs + [("model", "timm"), ("full", "timm")]:
        if a in times and b in times:
            print(f"speed {runs[a][0]} / {runs[b][0]}: {times[b] / times[a]:.2f}")


if __name__ == "__main__":
    main()
