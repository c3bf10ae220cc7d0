"""Render a synthetic source's classes to a PNG grid.

  python -m experiments.render --config configs/onepfrac.py --out out/onepfrac \
      [--vary=source.delta=0.001,0.01,0.1] [--num_shown=8] [--individual] [--tile=170]
      [--config.x=y]

One row per value of ``--vary`` (or a single row), one column per class, classes spread
evenly over [0, L). Writes ``OUT/grid.png`` and, with ``--individual``, one PNG per image.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
from absl import flags
from PIL import Image, ImageDraw, ImageFont

from experiments import _cli as cli
from fractaljax import config_utils, errors, sources

_CONFIG = cli.define_config("onepfrac", "Source config file.")
_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_VARY = flags.DEFINE_string(
    "vary", None, "One row per value of a config field: FIELD=V1,V2,... (e.g. source.delta)."
)
_NUM_SHOWN = flags.DEFINE_integer("num_shown", 8, "Classes shown per row.")
_INDIVIDUAL = flags.DEFINE_bool("individual", False, "Also write every image as its own PNG.")
_SEED = flags.DEFINE_integer("render_seed", 0, "Key for the walks and patch masks.")
_TILE = flags.DEFINE_integer(
    "tile", 0, "Side in px of each image in the grid (0: its own, enlarged to >= 128 px)."
)

MIN_SHOWN = 128  # images smaller than this are enlarged (nearest neighbour) in the grid


def to_uint8(img: np.ndarray) -> np.ndarray:
    """``float[H, W, C]`` in [0, 1] -> ``uint8[H, W, 3]``."""
    img = np.clip(np.asarray(img) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(img, 3, -1) if img.shape[-1] == 1 else img


def grid_image(
    rows: list[np.ndarray], row_names: list[str], gap: int = 2, tile: int = 0
) -> Image.Image:
    """Rows of ``uint8[K, H, W, 3]`` images -> one labelled PIL image, each image shown at
    ``tile`` px (0: its own size, enlarged pixel for pixel to at least :data:`MIN_SHOWN`;
    a smaller tile shrinks it, antialiased). Row labels are set at a size that stays legible
    when the grid is shown scaled down."""
    k, h0, w0, _ = rows[0].shape
    h = tile or h0 * max(1, -(-MIN_SHOWN // h0))
    w = h * w0 // h0
    font = ImageFont.load_default(size=max(16, h // 8))
    label_w = (
        max(int(font.getlength(n)) for n in row_names) + 2 * (h // 16 + 4) if any(row_names) else 0
    )
    canvas = Image.new("RGB", (label_w + k * (w + gap), len(rows) * (h + gap)), (40, 40, 40))
    draw = ImageDraw.Draw(canvas)
    for r, (imgs, name) in enumerate(zip(rows, row_names)):
        y = r * (h + gap)
        draw.text((h // 16 + 4, y + h // 2), name, fill=(255, 255, 255), font=font, anchor="lm")
        for c, img in enumerate(imgs):
            im = Image.fromarray(img)
            im = im.resize((w, h), Image.NEAREST if h >= h0 else Image.LANCZOS)
            canvas.paste(im, (label_w + c * (w + gap), y))
    return canvas


def main(argv) -> None:
    del argv
    config = _CONFIG.value
    if _NUM_SHOWN.value < 1:
        raise errors.UserError(f"--num_shown={_NUM_SHOWN.value}: must be >= 1")
    settings = [(None, None)]
    if _VARY.value:
        path, values = config_utils.parse_vary(config, _VARY.value)
        settings = [(path, v) for v in values]
    with errors.removed_on_bad_input(_OUT.value):
        render_all(config, settings)


def render_all(config, settings) -> None:
    """Render and write the grid (and the images) of every setting of ``--vary``."""
    try:
        os.makedirs(_OUT.value, exist_ok=True)
    except OSError as e:
        raise errors.UserError(f"--out={_OUT.value}: cannot create it ({e.strerror})") from None

    rows, names = [], []
    key = jax.random.key(_SEED.value)
    for path, value in settings:
        cfg = config if path is None else config_utils.with_field(config, path, value)
        t0 = time.perf_counter()
        source = sources.make(cfg, cache_dir=_OUT.value)
        labels = sources.class_grid_labels(source.num_classes, _NUM_SHOWN.value)
        images = np.asarray(jax.jit(source.render_labels)(labels, key))
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        name = "" if path is None else f"{path.split('.')[-1]}={shown}"
        print(
            f"{source.name} {name or ''}: {len(labels)} classes of {source.num_classes} "
            f"rendered in {time.perf_counter() - t0:.1f}s (incl. compile)"
        )
        rows.append(np.stack([to_uint8(im) for im in images]))
        names.append(name)
        if _INDIVIDUAL.value:
            for lab, img in zip(np.asarray(labels), rows[-1]):
                stem = f"{name.replace('=', '')}_" if name else ""
                Image.fromarray(img).save(os.path.join(_OUT.value, f"{stem}class{lab:05d}.png"))
    out = os.path.join(_OUT.value, "grid.png")
    grid_image(rows, names, tile=_TILE.value).save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    cli.run(main)
