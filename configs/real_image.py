"""One real image (1p-frac §single real image): Canny edges of one photograph and L random
warps of it of magnitude Delta, one class each (paper, CIFAR-100: edges 82.2, RGB 81.6;
affine 81.9, polynomial 81.3, elastic 37.0).

  python -m experiments.render --config configs/real_image.py:mini --out out/real_image \
      --vary=source.perturbation=affine,polynomial,elastic
  python -m experiments.pretrain --config configs/real_image.py:mini --workdir runs/img_mini
  ... --config.source.image_path=my_photo.jpg --config.source.mode=rgb

``:vit_ti`` (default): ViT-Tiny/16 at 224 px, L = 1000; ``:mini``: the CPU-sized run, L = 100.
The default image is scikit-learn's bundled china.jpg.
"""

import ml_collections

from configs import onepfrac


def get_config(arg: str = "vit_ti") -> ml_collections.ConfigDict:
    c = onepfrac.get_config(arg)  # the recipe 'vit_ti' or 'mini'
    num_classes = c.source.num_classes
    c.source = ml_collections.ConfigDict()
    c.source.name = "real_image"
    c.source.num_classes = num_classes  # L warps
    c.source.image_path = ""  # PNG or JPEG; '' = scikit-learn's china.jpg
    c.source.mode = "edges"  # 'edges' (Canny, gray), 'gray' or 'rgb'
    c.source.perturbation = "affine"  # 'affine', 'polynomial' or 'elastic'
    c.source.delta = 0.1  # warp parameters ~ U(-delta, delta), canvas = [-1, 1]^2
    c.source.elastic_grid = 4  # elastic: displacements on a grid x grid lattice, smoothed
    c.source.edge_resolution = 256  # Canny runs at max(this, image_size) px
    c.source.edge_sigma = 2.0  # Gaussian blur before the gradient, in pixels at that size
    c.source.edge_low = 0.1  # hysteresis thresholds, fractions of the largest gradient
    c.source.edge_high = 0.2
    return c
