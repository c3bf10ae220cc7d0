"""Dead leaves-k (Baradad et al., "Learning to See by Looking at Noise", NeurIPS 2021): k
fixed images of coloured shapes dropped one over another until they cover the canvas, one
class each (the official generator: generate_datasets/dead_leaves/generate_dataset.py of
mbaradad/learning_with_noise; its laws and the differences: fractaljax/sources/dead_leaves.py).

  python -m experiments.render --config configs/dead_leaves.py:small --out out/dead_leaves
  python -m experiments.pretrain --config configs/dead_leaves.py:small --workdir runs/dl

``:vit_ti`` (default) is the paper's ViT-Tiny/16 recipe with this source on the official
large-scale resolution (256 px, cropped and resized to 224 px), k = 1000; ``:small``,
``:quick`` and ``:mini`` are 1p-frac's CPU recipes (128 px, the official small-scale
resolution; mini: 32 px), k = 16, 16 and 100. The paper trains contrastively on 105k images;
here each image is a class (as OFDB), learned with the same LPCE recipe as 1p-frac.
"""

import ml_collections

from configs import onepfrac


def get_config(arg: str = "vit_ti") -> ml_collections.ConfigDict:
    c = onepfrac.get_config(arg)  # the recipe 'vit_ti', 'small', 'quick' or 'mini'
    c.source = source_block(c.source.num_classes)
    if arg == "vit_ti":
        c.render.image_size = 256  # the official large-scale images
    return c


def source_block(num_classes: int) -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.name = "dead_leaves"
    s.num_classes = num_classes
    s.shape_mode = "square"  # the script's default; 'mixed', 'circle', 'oriented_square', ...
    s.sigma = 3.0  # the radius law p(r) ~ r^-sigma - 1 on [0.03, 1] x resolution
    s.max_shapes = 5000  # the official max_iters: most images are covered long before
    return s
