"""Images/s of every synthetic source's ``batch(key, step, B)``, against 1p-frac, in one run.

  python benchmarks/source_bench.py [--size paper|mini|both] [--batch 64] [--repeats 5]
                                   [--sources onepfrac,radial_contour,...]

For each source config (``configs/<name>.py``; 1p-frac first, as the reference) it builds the
source (timing the one-time setup: FractalDB's category search, OFDB's image bank, the
real image's edges), then times the jit-compiled batch, as the training step calls it. It
prints img/s and the ratio to 1p-frac at the same size. For RCDB and VisualAtom it also times
the official drawing loop (``fractaljax.reference_contours``: Python and PIL, one process, as
the official scripts run per thread) at 512 px, and prints fractaljax's ratio to it. Dead
leaves is a bank of fixed images drawn once, so its drawing rate (classes / setup seconds,
compilation included) is compared with the official OpenCV painting loop
(``fractaljax.reference_dead_leaves``) on the same canvas, given fractaljax's draws (the
official loop's own draws not timed: a bound in its favour).
"""

from __future__ import annotations

import argparse
import importlib
import random
import tempfile
import time

import jax
import numpy as np

from fractaljax import sources

SOURCES = [
    "onepfrac", "fractaldb", "ofdb", "real_image", "radial_contour", "visual_atom", "dead_leaves",
]  # fmt: skip
# Sources with an official CPU generator transcribed in the repository: timed too, per image
# on the official 512 px canvas (its draws included), against fractaljax at that canvas.
REFERENCES = {"radial_contour", "visual_atom"}


def config_for(name: str, size: str):
    """The paper-size (224 px) or mini (32 px) config of a source."""
    arg = "vit_ti" if size == "paper" else "mini"
    return importlib.import_module(f"configs.{name}").get_config(arg)


def bench(
    name: str, size: str, batch: int, repeats: int, num_classes: int = 0
) -> tuple[float, float]:
    """``(setup seconds, img/s)`` of one source (``num_classes``: the config's if 0)."""
    config = config_for(name, size)
    if num_classes:
        config.source.num_classes = num_classes
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        source = sources.make(config, cache_dir=cache)
        setup = time.perf_counter() - t0
    fn = jax.jit(source.batch, static_argnums=2)
    key = jax.random.key(0)
    jax.block_until_ready(fn(key, 0, batch))
    times = []
    for step in range(1, repeats + 1):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(key, step, batch))
        times.append(time.perf_counter() - t0)
    return setup, batch / float(np.median(times))


def bench_reference(name: str, images: int) -> float:
    """Images/s of the official loop (draws and drawing) at 512 px, one process."""
    from fractaljax import reference_contours

    rng = random.Random(0)
    t0 = time.perf_counter()
    for _ in range(images):
        reference_contours.official_image(reference_contours.official_draws(rng, name), name)
    return images / (time.perf_counter() - t0)


def bench_dead_leaves_reference(config, images: int) -> float:
    """Images/s of the official painting loop (OpenCV, one process) on ``config``'s canvas."""
    from fractaljax import reference_dead_leaves
    from fractaljax.sources import dead_leaves

    res = config.render.image_size
    draw = jax.jit(lambda k: dead_leaves.draw_shapes(k, config.source, res))
    draws = [jax.tree.map(np.asarray, draw(jax.random.key(i))) for i in range(images)]
    t0 = time.perf_counter()
    for d in draws:
        reference_dead_leaves.official_image(d, res)
    return images / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["paper", "mini", "both"], default="both")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference_images", type=int, default=16)
    parser.add_argument(
        "--sources",
        default=",".join(SOURCES),
        help="comma-separated subset (1p-frac, the reference, always runs first); FractalDB's "
        "and OFDB's paper-size setup searches 1000 categories on the 512 px canvas (minutes)",
    )
    parser.add_argument(
        "--num_classes",
        type=int,
        default=0,
        help="classes of every source (0: each config's, 1000 at paper size); the fixed banks "
        "(OFDB, dead leaves) are drawn in the setup, so fewer classes shorten it",
    )
    args = parser.parse_args()
    names = [n for n in args.sources.split(",") if n]
    unknown = sorted(set(names) - set(SOURCES))
    if unknown:
        parser.error(f"--sources: unknown {unknown}; choose from {SOURCES}")
    names = ["onepfrac"] + [n for n in SOURCES if n in names and n != "onepfrac"]
    sizes = ["paper", "mini"] if args.size == "both" else [args.size]
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, batch {args.batch}")
    for size in sizes:
        ref = None
        for name in names:
            setup, rate = bench(name, size, args.batch, args.repeats, args.num_classes)
            ref = ref or rate
            print(
                f"{size:5s} {name:14s} setup {setup:6.1f}s  {rate:8.1f} img/s  "
                f"{rate / ref:5.2f}x 1p-frac",
                flush=True,
            )
            if size == "paper" and name in REFERENCES:
                try:
                    official = bench_reference(name, args.reference_images)
                except ImportError as e:  # PIL absent (e.g. a bare device image)
                    print(f"{size:5s} {name:14s} official loop skipped: {e}", flush=True)
                    continue
                print(
                    f"{size:5s} {name:14s} official loop (Python + PIL, 512 px) "
                    f"{official:8.1f} img/s; fractaljax {rate / official:5.2f}x",
                    flush=True,
                )
            if size == "paper" and name == "dead_leaves":
                config = config_for(name, size)
                drawn = (args.num_classes or config.source.num_classes) / setup
                try:
                    official = bench_dead_leaves_reference(config, args.reference_images)
                except ImportError as e:  # OpenCV absent (e.g. a bare device image)
                    print(f"{size:5s} {name:14s} official painting skipped: {e}", flush=True)
                    continue
                res = config.render.image_size
                print(
                    f"{size:5s} {name:14s} bank drawn at {drawn:8.1f} img/s (compile included); "
                    f"official painting (OpenCV, {res} px) {official:8.1f} img/s; "
                    f"fractaljax {drawn / official:5.2f}x",
                    flush=True,
                )


if __name__ == "__main__":
    main()
