"""Radial contours (RCDB) and VisualAtom against their official generators, measured.

  python -m experiments.compare_contours [--images 32] [--out docs/sources/contours.png]

For each source, on the official 512 px canvas:
1. the same draws, two drawings: the JAX source's and the official loop's
   (``fractaljax.reference_contours``: the official code with PIL, statement by statement):
   the share of inked pixels on which they agree;
2. the same laws, independent draws: ``--images`` official images (Python's ``random`` in the
   official order, the first image of a fresh class each) against as many of the JAX source
   (one per class of a fresh seed): the ink fraction (the share of non-background pixels)
   of each, its mean, quartiles and a two-sample KS p-value;
3. what the configured drawing budget (``source.stroke_budget``) costs: the images it
   thins and the share of their inked pixels that change, at 512 px and at the small
   protocol's 128 px canvas;
4. a figure: official and JAX drawings of the same draws side by side.
"""

from __future__ import annotations

import os
import random

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from scipy import stats

from configs import radial_contour, visual_atom
from experiments import _cli as cli
from fractaljax import reference_contours as ref
from fractaljax.sources import contours

_IMAGES = flags.DEFINE_integer("images", 32, "Images per source and comparison.")
_OUT = flags.DEFINE_string(
    "out", "out/contours_official_vs_fractaljax.png", "PNG (docs/sources/contours.png: committed)."
)
_SHOWN = flags.DEFINE_integer("shown", 4, "Image pairs per source in the figure.")

KINDS = {"radial_contour": radial_contour, "visual_atom": visual_atom}


def drawings(c, d, size: int, budget: int) -> np.ndarray:
    """``uint8[B, size, size]``: the JAX drawings of batched draws ``d``."""
    kind = c.source.name
    draw = jax.jit(jax.vmap(lambda x: contours.render_image(x, kind, c.source, size, budget)))
    n, chunk = len(d["vertices"]), 4  # a few at a time: a large budget is a large array
    out = [draw({k: v[i : i + chunk] for k, v in d.items()}) for i in range(0, n, chunk)]
    return np.asarray(jnp.round(jnp.concatenate(out) * 255)).astype(np.uint8)


def nth(d: dict, b: int) -> dict:
    return {k: np.asarray(v[b]) for k, v in d.items()}


def compare(kind: str, n: int) -> tuple[dict, np.ndarray]:
    c = KINDS[kind].get_config("small")
    c.render.image_size, c.source.num_classes, c.seed = 512, n, 1
    background = 255 if c.source.background == "white" else 0
    params = contours.classes(c)
    d = contours.batch_draws(c, params, jnp.arange(n), jax.random.split(jax.random.key(0), n))
    unlimited = 8 * 512 * 512  # more points than any image here has pixels to draw
    ours = drawings(c, d, 512, unlimited)
    official = np.stack([ref.official_image(nth(d, b), kind) for b in range(n)])
    ink = (ours != background) | (official != background)
    agree = [(o[m] == t[m]).mean() for o, t, m in zip(ours, official, ink)]

    rng = random.Random(0)
    theirs = np.stack([ref.official_image(ref.official_draws(rng, kind), kind) for _ in range(n)])
    fill_ours = (ours != background).mean((1, 2))
    fill_theirs = (theirs != background).mean((1, 2))

    thinned = {}
    for size in (512, 128):
        budget = contours.budget_of(c, size)
        full = ours if size == 512 else drawings(c, d, size, unlimited)
        capped = drawings(c, d, size, budget)
        inked = np.maximum((full != background).sum((1, 2)), 1)
        changed = (full != capped).sum((1, 2)) / inked  # share of the inked pixels
        thinned[size] = (float((changed > 0).mean()), float(changed.mean()), float(changed.max()))
    row = dict(
        agree_mean=float(np.mean(agree)),
        agree_min=float(np.min(agree)),
        fill_ours=np.quantile(fill_ours, [0.25, 0.5, 0.75]).tolist() + [fill_ours.mean()],
        fill_official=np.quantile(fill_theirs, [0.25, 0.5, 0.75]).tolist() + [fill_theirs.mean()],
        ks_p=float(stats.ks_2samp(fill_ours, fill_theirs).pvalue),
        thinned=thinned,
    )
    k = _SHOWN.value
    pairs = np.concatenate([np.concatenate([official[b], ours[b]], 0) for b in range(k)], 1)
    return row, pairs


def main(argv) -> None:
    del argv
    from PIL import Image

    panels = []
    for kind in KINDS:
        row, pairs = compare(kind, _IMAGES.value)
        q = lambda v: " / ".join(f"{x:.3f}" for x in v[:3]) + f" (mean {v[3]:.3f})"  # noqa: E731
        print(
            f"{kind}: same draws, inked pixels agreeing: mean {row['agree_mean']:.4f}, "
            f"min {row['agree_min']:.4f} ({_IMAGES.value} images, 512 px)\n"
            f"  ink fraction, quartiles: official {q(row['fill_official'])}; "
            f"fractaljax {q(row['fill_ours'])}; KS p {row['ks_p']:.2f}"
            + "".join(
                f"\n  at {size} px the budget thins {t[0]:.0%} of the images, changing "
                f"{t[1]:.2%} of their inked pixels on average ({t[2]:.2%} at most)"
                for size, t in row["thinned"].items()
            ),
            flush=True,
        )
        panels.append(pairs)
    # Each panel: top, the official loop; bottom, fractaljax; shown at a quarter size, with
    # a label column on the left and a gray rule between the images.
    from PIL import ImageDraw

    side = 512 // 4
    rows = []
    for kind, pairs in zip(KINDS, panels):
        for r, who in enumerate(("official", "fractaljax")):
            strip = pairs[r * 512 : (r + 1) * 512]
            small = Image.fromarray(strip).resize((strip.shape[1] // 4, side), Image.BOX)
            row = Image.new("L", (small.width + 110, side + 2), 128)
            row.paste(small, (110, 1))
            ImageDraw.Draw(row).text((4, side // 2 - 10), f"{who}\n{kind}", fill=255)
            rows.append(row)
    figure = Image.new("L", (rows[0].width, sum(r.height for r in rows)), 128)
    for i, row in enumerate(rows):
        figure.paste(row, (0, i * row.height))
    os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
    figure.save(_OUT.value)
    print(f"wrote {_OUT.value} (per source: official above, fractaljax below)")


if __name__ == "__main__":
    cli.run(main)
