"""1p-frac source (Nakamura et al., "Scaling Backwards: Minimal Synthetic Pre-training?",
ECCV 2024), as the official generator makes it: one sigma-factor fractal (N=2 maps,
sigma=3.5) and L=1000 locally perturbed copies of it (every parameter scaled by
u ~ U(1 - Delta, 1 + Delta), Delta=0.1; a class whose image fills <= 5% is redrawn), one
fixed image each: 100k points on a 512 px canvas (pad 6), each pasting a random 3x3 patch.

Look at its classes, side by side for three values of Delta:

  python -m experiments.render --config configs/onepfrac.py --out out/onepfrac \
      --vary=source.delta=0.001,0.01,0.1

Rendering speed on a 2-core CPU: see benchmarks/render_bench.py.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.input_size = 0  # the model's input side; 0: the canvas's (no resize)

    # Source: which fractals, how many classes (official values: docs/recipe.md).
    c.source = ml_collections.ConfigDict()
    c.source.name = "onepfrac"
    c.source.num_classes = 1000  # L
    c.source.n_maps = 2  # N affine maps of the base system
    c.source.sigma = 3.5  # sigma-factor: sum_i (s1_i + 2 s2_i) ~ U(sigma - 0.1, sigma + 0.1)
    c.source.delta = 0.1  # perturbation: each parameter times U(1 - delta, 1 + delta)
    c.source.min_fill = 0.05  # a class (and the base) is redrawn unless its image fills more
    c.source.max_tries = 100  # draws of the base fractal
    c.source.class_max_tries = 100  # perturbations tried per class
    c.source.diverge_steps = 100_000  # a class whose walk this long runs away is redrawn
    c.source.recompute_probs = False  # official: the base's map probabilities for every class
    c.source.data = "fixed"  # official: L fixed images; 'stream': fresh draws every step
    c.source.bank = False  # True: keep the L fixed images on the device instead of rendering

    # Rendering (fractaljax.render.RenderSpec): the official 512 px canvas, pad 6.
    c.render = ml_collections.ConfigDict()
    c.render.image_size = 512  # the canvas; the training transform crops and resizes it
    c.render.walkers = 1000  # walkers * steps = 100k points, as the paper
    c.render.steps = 100
    c.render.burn_in = 20
    c.render.pad = 6
    c.render.patch = "paste"  # official speckled patches; 'union' (OR-ed masks), 'none'
    c.render.walk_start = "attractor"  # walker 0 is the official walk; 'origin': all from 0
    c.render.color = False  # True: a random colour gradient per image
    c.render.channels = 3
    c.render.gray_level = 127 / 255
    c.render.shared_walk = True
    c.render.background = "black"  # 'random': a random dark colour gradient behind
    return c
