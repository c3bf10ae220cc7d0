"""FractalDB-k (Kataoka et al., ACCV 2020): k random IFS categories (N in 2..7 maps, all
parameters U(-1, 1), fill rate >= 0.2 on the official 512 px canvas), instances by parameter
weighting, random 3x3 patch patterns and flips. The baseline 1p-frac is compared with
(FractalDB-1k: 81.6 on CIFAR-100).

  python -m experiments.render --config configs/fractaldb.py:mini --out out/fractaldb
  python -m experiments.pretrain --config configs/fractaldb.py:mini --workdir runs/fdb_mini
  python -m experiments.pretrain --config configs/fractaldb.py --workdir runs/fdb1k   # GPU/TPU

``:vit_ti`` (default) is the paper's ViT-Tiny/16 recipe (512 px canvas, 224 px input),
k = 1000; ``:mini`` is the CPU-sized run of configs/onepfrac.py:mini with k = 100. The
category search runs once and is cached in the workdir (ifs_categories_<hash>.npz).
"""

import ml_collections

from configs import onepfrac


def get_config(arg: str = "vit_ti") -> ml_collections.ConfigDict:
    c = onepfrac.get_config(arg)  # the recipe 'vit_ti' or 'mini'
    c.source = source_block(c.source.num_classes)
    return c


def source_block(num_classes: int) -> ml_collections.ConfigDict:
    """FractalDB's source block with ``num_classes`` categories (1p-frac's L)."""
    s = ml_collections.ConfigDict()
    s.name = "fractaldb"
    s.num_classes = num_classes  # k categories
    s.min_maps = 2  # N ~ U{min_maps..max_maps}; official randint(2, 8): 2..7
    s.max_maps = 7
    s.min_fill = 0.2  # a category is kept if its point rendering fills >= 20%
    s.search_size = 512  # ... of the official canvas (100k points, pad 6)
    s.search_pad = 6
    # Optional: s.search_walkers x s.search_steps points (default 1000 x 100, the official
    # 100k); fewer only where a small search canvas saturates anyway (the tests).
    s.weights = (0.8, 0.9, 1.1, 1.2)  # one parameter a..f of every map times w
    s.flip = True  # random horizontal and vertical flips of each instance
    return s
