"""Dead leaves against the official generator's loop drawn with OpenCV, measured.

  python -m experiments.compare_dead_leaves [--images 16] [--size 128]
      [--out docs/sources/dead_leaves.png]

For each shape mode ('square', the official script's default, and 'mixed'): ``--images``
images whose shapes are drawn once (fractaljax's draws, the official laws) and painted
twice, by fractaljax and by the official loop (``fractaljax.reference_dead_leaves``:
``cv2.circle`` / ``cv2.fillPoly`` until no pixel is black). Prints the share of pixels
that agree (mean and min) and the number of shapes painted; writes a figure with the two
drawings of the first images side by side (official above).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from configs import dead_leaves
from experiments import _cli as cli
from fractaljax import reference_dead_leaves as ref
from fractaljax.sources import dead_leaves as dl

_IMAGES = flags.DEFINE_integer("images", 16, "Images per shape mode.")
_SIZE = flags.DEFINE_integer("size", 128, "Resolution (official small scale: 128).")
_OUT = flags.DEFINE_string("out", "out/dead_leaves_official_vs_fractaljax.png", "PNG to write.")
_SHOWN = flags.DEFINE_integer("shown", 4, "Image pairs per mode in the figure.")


def main(argv) -> None:
    del argv
    from PIL import Image

    res, rows = _SIZE.value, []
    for mode in ("square", "mixed"):
        c = dead_leaves.get_config("small")
        c.source.shape_mode = mode
        paint = jax.jit(lambda d: dl.paint(d, res))
        agree, pairs = [], []
        for k in range(_IMAGES.value):
            d = dl.draw_shapes(jax.random.key(k), c.source, res)
            ours = np.asarray(jnp.round(paint(d) * 255)).astype(np.uint8)
            theirs = ref.official_image(jax.tree.map(np.asarray, d), res)
            agree.append((ours == theirs).all(-1).mean())
            if k < _SHOWN.value:
                pairs.append(np.concatenate([theirs, ours], 0))
        print(
            f"{mode}: pixels equal to the official drawing of the same shapes: mean "
            f"{np.mean(agree):.4f}, median {np.median(agree):.4f}, min {np.min(agree):.4f} "
            f"({len(agree)} images, {res} px)",
            flush=True,
        )
        rows.append(np.concatenate(pairs, 1))
    grid = np.concatenate(rows, 0)
    os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
    Image.fromarray(grid).save(_OUT.value)
    print(f"wrote {_OUT.value} (per mode: official above, fractaljax below)")


if __name__ == "__main__":
    cli.run(main)
