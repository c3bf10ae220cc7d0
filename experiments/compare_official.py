"""Draw one 1p-frac base fractal three ways, side by side with the official generator.

  python -m experiments.compare_official [--out docs/official_vs_fractaljax.png]
      [--sigma 3.5] [--seed 0] [--size 512] [--zoom 96]

Columns: the official generator (``fractaljax.reference``, its code line by line: one
100k-step walk, 3x3 pastes in walk order), fractaljax's default (``patch='paste'``, parallel
walkers), and the OR-ed patches (``patch='union'``). Top row: the whole canvas; bottom row:
a ``zoom`` px crop around the centre of mass, enlarged, where the texture shows. Prints each
image's fill rate and share of lit neighbours of a lit pixel (official: about 0.44-0.49).
"""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np
from absl import flags

from experiments import _cli as cli
from fractaljax import ifs, reference, render

_OUT = flags.DEFINE_string(
    "out",
    "out/official_vs_fractaljax.png",
    "PNG to write (docs/official_vs_fractaljax.png is the committed one).",
)
_SIGMA = flags.DEFINE_float("sigma", 3.5, "sigma-factor of the base fractal.")
_SEED = flags.DEFINE_integer("seed", 0, "Key of the base fractal.")
_SIZE = flags.DEFINE_integer("size", 512, "Canvas side (official: 512).")
_ZOOM = flags.DEFINE_integer("zoom", 96, "Side of the enlarged crop.")


def main(argv) -> None:
    del argv
    ifs.check_sigma(_SIGMA.value, 2)
    base = ifs.sample_sigma_factor(jax.random.key(_SEED.value), 2, _SIGMA.value)
    maps, probs = np.asarray(base.maps, np.float64), np.asarray(base.probs, np.float64)
    pad = 6 if _SIZE.value >= 512 else 3
    images = {"official generator": reference.render(maps, probs, size=_SIZE.value, pad=pad) > 0}
    spec = render.RenderSpec(image_size=_SIZE.value, pad=pad, channels=1)
    one = jax.tree.map(lambda a: a[None], base)
    for patch in ("paste", "union"):
        im = render.render(dataclasses.replace(spec, patch=patch), one, jax.random.key(1))
        images[f"fractaljax patch='{patch}'"] = np.asarray(im)[0, ..., 0] > 0

    for name, lit in images.items():
        print(
            f"{name:<28} fill {lit.mean():.3f}  lit-neighbour share "
            f"{reference.lit_neighbour_share(lit):.3f}"
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = images["official generator"]
    rows, cols = np.nonzero(ref)
    z = _ZOOM.value
    r0 = int(np.clip(rows.mean() - z // 2, 0, _SIZE.value - z))
    c0 = int(np.clip(cols.mean() - z // 2, 0, _SIZE.value - z))
    fig, axes = plt.subplots(2, len(images), figsize=(3.2 * len(images), 6.6))
    for j, (name, lit) in enumerate(images.items()):
        share = reference.lit_neighbour_share(lit)
        axes[0, j].imshow(lit, cmap="gray", vmin=0, vmax=2, interpolation="nearest")
        axes[0, j].set_title(f"{name}\nneighbour share {share:.2f}", fontsize=9)
        axes[1, j].imshow(
            lit[r0 : r0 + z, c0 : c0 + z], cmap="gray", vmin=0, vmax=2, interpolation="nearest"
        )
        axes[1, j].set_title(f"{z} px crop", fontsize=9)
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"one sigma-{_SIGMA.value} fractal, {_SIZE.value} px, 100k points", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
    fig.savefig(_OUT.value, dpi=110)
    print(f"wrote {_OUT.value}")


if __name__ == "__main__":
    cli.run(main)
