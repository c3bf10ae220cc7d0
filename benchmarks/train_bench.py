"""Cost of rendering inside the train step: step time with in-step rendering vs fixed images.

  python benchmarks/train_bench.py [--config mini|vit_ti] [--source onepfrac|fractaldb|ofdb|
      real_image] [--dtype float32|bfloat16] [--batch N] [--steps 10] [--variant previous]

Both steps are the same jit-compiled ``train.make_train_step`` (augmentation, forward,
LPCE, AdamW update); the reference reads its images from a bank of pre-rendered images on
the device (as a perfect data loader would deliver them) instead of rendering them. Prints
the median step time of each, their ratio (goal: <= 1.10 on a GPU) and img/s.

``--variant official`` (default) is the config as it is: for 1p-frac the official data
(512 px canvas for vit_ti, speckled pastes, fixed images, per-class rejection);
``--variant previous`` is the renderer before it was made faithful: OR-ed patches, every
walker from the origin, fresh images every step, rendered at the model's input size.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs import onepfrac
from fractaljax import sharding, sources, train

CONFIGS = onepfrac.RECIPES


def time_steps(step_fn, state, steps: int) -> float:
    """Median seconds per step over ``steps`` steps, after a compile + warm-up step."""
    state, m = step_fn(state, jnp.int32(0))
    jax.block_until_ready(m)
    times = []
    for i in range(1, steps + 1):
        t0 = time.perf_counter()
        state, m = step_fn(state, jnp.int32(i))
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="mini")
    parser.add_argument("--batch", type=int, default=None, help="override batch_size")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--bank", type=int, default=64, help="pre-rendered images in the bank")
    parser.add_argument("--source", default="onepfrac", help="configs/<source>.py for non-1p-frac")
    parser.add_argument("--dtype", default=None, help="model.dtype override (e.g. bfloat16)")
    parser.add_argument("--variant", choices=("official", "previous"), default="official")
    args = parser.parse_args()

    if args.source == "onepfrac":
        config = onepfrac.get_config(args.config)
    else:
        config = importlib.import_module(f"configs.{args.source}").get_config(args.config)
    if args.dtype:
        config.model.dtype = args.dtype
    if args.batch:
        config.batch_size = args.batch
    if args.variant == "previous":
        size = train.input_size(config)
        config.input_size = 0
        config.render.update(dict(image_size=size, pad=3 if size >= 64 else 1, patch="union"))
        config.render.walk_start = "origin"
        if args.source == "onepfrac":
            config.source.data = "stream"
    mesh = sharding.data_mesh()
    source = sources.make(config)
    model = train.make_model(config, source.num_classes)
    tx = train.make_optimizer(config, train.runtime_lr)

    labels = jnp.arange(args.bank) % source.num_classes
    bank = jax.jit(source.render_labels)(labels, jax.random.key(0))
    fixed = dataclasses.replace(
        source, draw=lambda arrays, lab, key: arrays[lab % args.bank], arrays=bank
    )

    dev = jax.devices()[0]
    print(
        f"{args.config} {args.source} ({args.variant}): {config.model.variant} "
        f"({config.model.dtype}), {config.render.image_size} px -> "
        f"{train.input_size(config)} px, batch "
        f"{config.batch_size}, "
        f"{config.render.walkers * config.render.steps} points/image; "
        f"{len(jax.devices())} x {dev.platform} ({dev.device_kind})"
    )
    results = {}
    for name, src in (("fixed images", fixed), ("in-step rendering", source)):
        state = train.init_state(config, model, tx, mesh, source.image_shape)
        step = train.make_train_step(config, model, src, mesh)
        step_fn = lambda state, i, step=step: step(state, i, jnp.float32(config.optim.lr))
        results[name] = time_steps(step_fn, state, args.steps)
        print(
            f"  {name:<20} {results[name] * 1000:8.1f} ms/step  "
            f"{config.batch_size / results[name]:8.1f} img/s"
        )
    ratio = results["in-step rendering"] / results["fixed images"]
    print(f"ratio in-step / fixed: {ratio:.2f}  (goal on a GPU: <= 1.10)")


if __name__ == "__main__":
    main()
