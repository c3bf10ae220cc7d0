"""Images/s of the JAX 1p-frac renderer against a NumPy and a numba chaos game, in one run.

  python benchmarks/render_bench.py [--batch 64] [--size 224] [--points 100000]

All three render 1p-frac classes (sigma 3.5, Delta 0.1) with 100k points and 3x3 random
patches at 224 px:
* JAX: ``fractaljax.render`` (1000 walkers x 100 steps + 20 burn-in), jit-compiled,
  vmapped over the batch, on the default device;
* NumPy: ``fractaljax.reference`` (one sequential 100k-step walk per image, as the
  official generator), on a few images;
* numba (if installed): the same sequential walk compiled, parallel over images with
  ``prange`` on every core, one random mask per point.
It prints img/s for each, the ratios, and where the JAX renderer's time goes.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from fractaljax import ifs as ifs_lib
from fractaljax import reference
from fractaljax import render as render_lib


def timeit(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def numba_renderer():
    """A numba chaos game, parallel over images; None where numba is not installed."""
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(parallel=True, fastmath=True)
    def render_batch(maps, probs, size, num_points, pad, seed):  # pragma: no cover
        b, n = probs.shape
        out = np.zeros((b, size, size), np.uint8)
        for i in numba.prange(b):
            np.random.seed(seed + i)
            cum = np.cumsum(probs[i])
            pts = np.empty((num_points, 2))
            x = 0.0
            y = 0.0
            for t in range(num_points + 20):
                u = np.random.random()
                k = 0
                while k < n - 1 and u > cum[k]:
                    k += 1
                m = maps[i, k]
                x, y = m[0] * x + m[1] * y + m[4], m[2] * x + m[3] * y + m[5]
                if t >= 20:
                    pts[t - 20, 0] = x
                    pts[t - 20, 1] = y
            lo0, hi0 = pts[:, 0].min(), pts[:, 0].max()
            lo1, hi1 = pts[:, 1].min(), pts[:, 1].max()
            span = size - 1 - 2 * pad
            for p in range(num_points):
                c = int(round(pad + (pts[p, 0] - lo0) / (hi0 - lo0) * span))
                r = size - 1 - int(round(pad + (pts[p, 1] - lo1) / (hi1 - lo1) * span))
                mask = np.random.randint(1, 512)
                for k in range(9):
                    if (mask >> k) & 1:
                        rr, cc = r + k // 3 - 1, c + k % 3 - 1
                        if 0 <= rr < size and 0 <= cc < size:
                            out[i, rr, cc] = 127
        return out

    return render_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64, help="JAX and numba batch size")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--points", type=int, default=100_000, help="points per image")
    parser.add_argument("--walkers", type=int, default=1000, help="JAX walkers per image")
    parser.add_argument("--numpy_images", type=int, default=3, help="images for NumPy")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.points % args.walkers:
        parser.error(f"--points={args.points} must be a multiple of --walkers={args.walkers}")

    dev = jax.devices()[0]
    print(
        f"device: {dev.platform} ({dev.device_kind}), {len(jax.devices())} device(s), "
        f"{os.cpu_count()} CPU cores; batch {args.batch}, {args.size} px, "
        f"{args.points} points, 3x3 patches"
    )
    base = ifs_lib.sample_sigma_factor(jax.random.key(0), 2, 3.5)
    systems = ifs_lib.perturb(jax.random.key(1), base, args.batch, 0.1)
    spec = render_lib.RenderSpec(
        image_size=args.size, walkers=args.walkers, steps=args.points // args.walkers
    )
    key = jax.random.key(0)

    results = {}
    full = jax.jit(lambda s, k: render_lib.render(spec, s, k))
    results["jax"] = args.batch / timeit(lambda: full(systems, key), args.repeats)

    maps_np, probs_np = np.asarray(systems.maps, np.float64), np.asarray(systems.probs, np.float64)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for i in range(args.numpy_images):
        reference.render(maps_np[i], probs_np[i], size=args.size, num_points=args.points, rng=rng)
    results["numpy"] = args.numpy_images / (time.perf_counter() - t0)

    numba_fn = numba_renderer()
    if numba_fn is not None:
        run = lambda: numba_fn(maps_np, probs_np, args.size, args.points, spec.pad, 0)
        results["numba"] = args.batch / timeit(run, args.repeats)

    print(f"\n{'renderer':<10}{'img/s':>10}")
    for name, v in results.items():
        print(f"{name:<10}{v:>10.1f}")
    print(f"\nratio jax / numpy: {results['jax'] / results['numpy']:.0f}x  (target >= 300x)")
    if "numba" in results:
        print(f"ratio jax / numba: {results['jax'] / results['numba']:.2f}x  (target >= 1.5x)")
    else:
        print("numba not installed: pip install numba (in the dev extras) for that ratio")

    # Where the JAX renderer's time goes: each stage jitted alone on the same batch.
    u = render_lib._walk_uniforms(spec, key)
    walk = jax.jit(lambda s, u: render_lib.walk(s, u, spec.burn_in))
    x, y = walk(systems, u)
    raster = jax.jit(lambda x, y: render_lib.rasterize(x, y, args.size, spec.pad))
    lit = raster(x, y)
    seeds = jnp.arange(args.batch, dtype=jnp.uint32)
    masks = jax.vmap(render_lib.patch_masks, in_axes=(0, None))
    patch = jax.jit(lambda lit, s: render_lib.dilate_patches(lit, masks(s, args.size)))
    uniforms = jax.jit(lambda k: render_lib._walk_uniforms(spec, k))
    points = jax.jit(lambda s, k: render_lib.render(dataclasses.replace(spec, patch="none"), s, k))
    stages = {
        "walk uniforms (shared)": lambda: uniforms(key),
        "walk (scan)": lambda: walk(systems, u),
        "rescale + scatter": lambda: raster(x, y),
        "patch masks + dilation": lambda: patch(lit, seeds),
        "points only (no patches)": lambda: points(systems, key),
    }
    print("\nJAX stages (img/s of each stage alone):")
    for name, fn in stages.items():
        print(f"  {name:<28}{args.batch / timeit(fn, args.repeats):>10.0f}")


if __name__ == "__main__":
    main()
