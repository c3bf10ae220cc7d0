"""Images/s of the JAX 1p-frac renderer against a NumPy and a numba chaos game, in one run.

  python benchmarks/render_bench.py [--batch 64] [--size 224] [--points 100000]

All render 1p-frac classes (sigma 3.5, Delta 0.1) with 100k points and 3x3 random
patches, at 224 px by default (``--size 512``: the official canvas, pad 6):
* JAX, official patches: ``fractaljax.render`` with ``patch='paste'`` (the default: last
  paste wins, zero cells included), 1000 walkers x 100 steps + 20 burn-in, jit-compiled,
  on the default device, with ``rasterizer='auto'`` (on one CPU device: the images drawn
  one after another, ``'scatter_map'``) and with the whole batch vmapped (``'scatter'``);
  both as ``render()`` returns them (float32 RGB) and as the numba port writes them (one
  uint8 gray channel: the same drawing, without 12 bytes a pixel to write);
* JAX, OR-ed patches: ``patch='union'`` (the renderer before the official patches);
* NumPy: ``fractaljax.reference`` (the official generator line by line: one sequential
  100k-step walk and a loop of 3x3 pastes per image), on a few images;
* numba (if installed): the official walk and pastes compiled, parallel over images with
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


def to_uint8(images: jax.Array) -> jax.Array:
    """``float32[B, H, W, 1]`` in [0, 1] -> ``uint8[B, H, W]`` (gray 127 stays 127)."""
    return jnp.round(images[..., 0] * 255).astype(jnp.uint8)


def numba_renderer():
    """The official chaos game and pastes in numba, parallel over images; None where numba
    is not installed."""
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
            for t in range(num_points):
                pts[t, 0] = x
                pts[t, 1] = y
                u = np.random.random()
                k = 0
                while k < n - 1 and u > cum[k]:
                    k += 1
                m = maps[i, k]
                x, y = m[0] * x + m[1] * y + m[4], m[2] * x + m[3] * y + m[5]
            lo0, hi0 = pts[:, 0].min(), pts[:, 0].max()
            lo1, hi1 = pts[:, 1].min(), pts[:, 1].max()
            span = size - 2 * pad
            for p in range(num_points):
                c = int(pad + (pts[p, 0] - lo0) / (hi0 - lo0) * span)
                r = int(pad + (pts[p, 1] - lo1) / (hi1 - lo1) * span)
                mask = np.random.randint(1, 512)
                for k in range(9):  # the whole patch, zero cells included
                    rr, cc = size - 1 - (r + 1 + k // 3), c + 1 + k % 3
                    if 0 <= rr < size and cc < size:
                        out[i, rr, cc] = 127 * ((mask >> (8 - k)) & 1)
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
        image_size=args.size,
        walkers=args.walkers,
        steps=args.points // args.walkers,
        pad=6 if args.size >= 512 else 3,
    )
    key = jax.random.key(0)

    auto = render_lib.resolve_rasterizer("auto")
    gray = dataclasses.replace(spec, channels=1)
    variants = {  # name: (spec, output as the numba port writes it: one uint8 channel)
        f"jax paste, uint8 gray ({auto})": (gray, True),
        f"jax paste, f32 RGB ({auto})": (spec, False),
        "jax paste, f32 RGB (scatter)": (dataclasses.replace(spec, rasterizer="scatter"), False),
        f"jax union, f32 RGB ({auto})": (dataclasses.replace(spec, patch="union"), False),
    }
    results = {}
    for name, (sp, as_uint8) in variants.items():
        if "(scatter)" in name and auto == "scatter":
            continue
        if as_uint8:
            full = jax.jit(lambda s, k, sp=sp: to_uint8(render_lib.render(sp, s, k)))
        else:
            full = jax.jit(lambda s, k, sp=sp: render_lib.render(sp, s, k))
        results[name] = args.batch / timeit(lambda f=full: f(systems, key), args.repeats)

    maps_np, probs_np = np.asarray(systems.maps, np.float64), np.asarray(systems.probs, np.float64)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for i in range(args.numpy_images):
        reference.render(
            maps_np[i], probs_np[i], size=args.size, num_points=args.points, pad=spec.pad, rng=rng
        )
    results["numpy"] = args.numpy_images / (time.perf_counter() - t0)

    numba_fn = numba_renderer()
    if numba_fn is not None:
        run = lambda: numba_fn(maps_np, probs_np, args.size, args.points, spec.pad, 0)
        results["numba"] = args.batch / timeit(run, args.repeats)

    print(f"\n{'renderer':<36}{'img/s':>10}")
    for name, v in results.items():
        print(f"{name:<36}{v:>10.1f}")
    for name in (n for n in results if n.startswith("jax")):
        print(f"\nratio {name} / numpy: {results[name] / results['numpy']:.0f}x", end="")
        if "numba" in results:
            print(f", / numba: {results[name] / results['numba']:.2f}x", end="")
    print(
        "\n(targets, for the drawing in numba's format, uint8 gray: >= 3x numba at 224 px, "
        ">= 2x at 512 px; f32 RGB adds writing 3 floats a pixel, what render() returns)"
    )
    if "numba" not in results:
        print("numba not installed: pip install numba (in the dev extras) for that ratio")

    # Where the JAX renderer's time goes: each stage jitted alone on the same batch.
    u = render_lib._walk_uniforms(spec, key)
    walk = jax.jit(lambda s, u: render_lib.walk(s, u, spec.burn_in))
    x, y = walk(systems, u)
    raster = jax.jit(lambda x, y: render_lib.rasterize(x, y, args.size, spec.pad))
    row, col, _ = raster(x, y)
    scatter = jax.jit(lambda r, c: render_lib.last_point_index(r, c, args.size, "scatter"))
    by_sort = jax.jit(lambda r, c: render_lib.last_point_index(r, c, args.size, "sort"))
    last = scatter(row, col)
    seeds = jnp.arange(args.batch, dtype=jnp.uint32)
    paste = jax.jit(render_lib.paste_patches)
    union = jax.jit(lambda last, s: render_lib.union_patches(last >= 0, s))
    uniforms = jax.jit(lambda k: render_lib._walk_uniforms(spec, k))
    points = jax.jit(lambda s, k: render_lib.render(dataclasses.replace(spec, patch="none"), s, k))
    draw_map = jax.jit(
        lambda x, y: render_lib.draw(
            dataclasses.replace(spec, rasterizer="scatter_map"), x, y, seeds
        )
    )
    stages = {
        "walk uniforms (shared)": lambda: uniforms(key),
        "walk (scan)": lambda: walk(systems, u),
        "rescale": lambda: raster(x, y),
        "scatter-max of indices": lambda: scatter(row, col),
        "sort rasterizer (no scatter)": lambda: by_sort(row, col),
        "official pastes": lambda: paste(last, seeds),
        "OR-ed patches": lambda: union(last, seeds),
        "rescale+scatter+pastes, map": lambda: draw_map(x, y),
        "points only (no patches)": lambda: points(systems, key),
    }
    print("\nJAX stages (img/s of each stage alone):")
    for name, fn in stages.items():
        print(f"  {name:<28}{args.batch / timeit(fn, args.repeats):>10.0f}")


if __name__ == "__main__":
    main()
