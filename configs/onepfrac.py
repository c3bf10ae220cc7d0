"""1p-frac source (Nakamura et al., "Scaling Backwards: Minimal Synthetic Pre-training?",
ECCV 2024): one sigma-factor fractal (N=2 maps, sigma=3.5) and L=1000 locally perturbed
copies of it (every parameter scaled by u ~ U(1 - Delta, 1 + Delta), Delta=0.1), one class
each, rendered at 224 px with 100k points drawn as random 3x3 patches.

Look at its classes, side by side for three values of Delta:

  python -m experiments.render --config configs/onepfrac.py --out out/onepfrac \
      --vary=source.delta=0.001,0.01,0.1

Rendering speed on a 2-core CPU: see benchmarks/render_bench.py.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    # Source: which fractals, how many classes.
    c.source = ml_collections.ConfigDict()
    c.source.name = "onepfrac"
    c.source.num_classes = 1000  # L
    c.source.n_maps = 2  # N affine maps of the base system
    c.source.sigma = 3.5  # sigma-factor: sum_i (s1_i + 2 s2_i) ~ U(sigma - 0.1, sigma + 0.1)
    c.source.delta = 0.1  # perturbation: each parameter times U(1 - delta, 1 + delta)
    c.source.min_fill = 0.05  # the base fractal is redrawn until its fill rate exceeds this
    c.source.max_tries = 100

    # Rendering (fractaljax.render.RenderSpec).
    c.render = ml_collections.ConfigDict()
    c.render.image_size = 224
    c.render.walkers = 1000  # walkers * steps = 100k points, as the paper
    c.render.steps = 100
    c.render.burn_in = 20
    c.render.pad = 3  # the paper pads 6 px on a 512 px canvas
    c.render.patch = "pixel"  # 'pixel': random 3x3 patches, 'none': single points
    c.render.color = False  # True: a random colour gradient per image
    c.render.channels = 3
    c.render.gray_level = 127 / 255
    c.render.shared_walk = True
    c.render.background = "black"  # 'random': a random dark colour gradient behind
    return c
