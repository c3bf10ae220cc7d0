"""Data-parallel scaling: renderer img/s and train-step time on 1, 2, 4, 8 devices.

  python benchmarks/scaling_bench.py [--config mini|vit_ti] [--devices 1,2,4,8] [--steps 5]
      [--param_sharding replicated|fsdp]

Each device count runs in its own process. On a CPU the devices are virtual
(``--xla_force_host_platform_device_count``) and share the same cores, so the numbers check
that the sharded step runs and computes the same thing (the loss after the timed steps is
printed: it must agree across device counts), not that it gets faster; on a GPU/TPU host the
counts are real devices (the first N, through ``CUDA_VISIBLE_DEVICES``; TPU hosts are not
limited by this script).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def child(args) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from configs import onepfrac
    from fractaljax import sharding, sources, train

    config = onepfrac.get_config(args.config)
    config.param_sharding = args.param_sharding
    if args.batch:
        config.batch_size = args.batch
    mesh = sharding.data_mesh()
    sharding.check_batch(config.batch_size, mesh)
    source = sources.make(config)
    key = jax.random.key(0)
    split = sharding.batch_sharded(mesh)

    @jax.jit
    def render(step):
        images, labels = source.batch(key, step, config.batch_size)
        return jax.lax.with_sharding_constraint(images, split)

    def median(fn):
        jax.block_until_ready(fn(0))
        times = []
        for i in range(1, args.steps + 1):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(i))
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    t_render = median(lambda i: render(jnp.int32(i)))
    _, model, _, _, state = train.build(config, mesh, source)
    layout = jax.tree.map(lambda x: x.sharding, state)
    step = train.make_train_step(config, model, source, mesh, layout)
    lrs = train.learning_rates(config)
    box = {"state": state}

    def one(i):
        box["state"], box["metrics"] = step(box["state"], jnp.int32(i), lrs[i % len(lrs)])
        return box["metrics"]

    t_step = median(one)
    print(
        json.dumps(
            {
                "devices": jax.device_count(),
                "render_img_s": config.batch_size / t_render,
                "step_s": t_step,
                "loss": float(box["metrics"]["loss"]),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="mini", choices=("mini", "vit_ti"))
    parser.add_argument("--devices", default="1,2,4,8")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=0, help="global batch (default: config's)")
    parser.add_argument("--param_sharding", default="replicated")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    rows = []
    for n in map(int, args.devices.split(",")):
        env = dict(os.environ)
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}"
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, range(n)))  # the first n GPUs
        cmd = [sys.executable, __file__, "--child", *sys.argv[1:]]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode:
            print(f"{n} devices failed:\n{out.stderr[-2000:]}")
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(
            f"{r['devices']} device(s): render {r['render_img_s']:8.1f} img/s  "
            f"train step {r['step_s'] * 1000:8.1f} ms  loss after {args.steps + 1} steps "
            f"{r['loss']:.6f}",
            flush=True,
        )
    if rows:
        base = rows[0]
        for r in rows[1:]:
            speed = r["render_img_s"] / base["render_img_s"]
            print(
                f"{r['devices']} vs {base['devices']}: render x{speed:.2f}, "
                f"step x{base['step_s'] / r['step_s']:.2f}, loss diff "
                f"{abs(r['loss'] - base['loss']):.1e}"
            )


if __name__ == "__main__":
    main()
