"""OFDB-k (Nakamura et al., ICCV 2023): one fixed fractal image per category, k categories
found as FractalDB's; augmentation is the only variation (OFDB-1k: 84.0 on CIFAR-100).

  python -m experiments.render --config configs/ofdb.py:mini --out out/ofdb
  python -m experiments.pretrain --config configs/ofdb.py:mini --workdir runs/ofdb_mini

``:vit_ti`` (default): ViT-Tiny/16 (512 px canvas, 224 px input), k = 1000; ``:mini``:
the CPU-sized run, k = 100.
"""

import ml_collections

from configs import fractaldb, onepfrac


def get_config(arg: str = "vit_ti") -> ml_collections.ConfigDict:
    c = onepfrac.get_config(arg)  # the recipe 'vit_ti' or 'mini'
    c.source = fractaldb.source_block(c.source.num_classes)  # FractalDB's categories
    c.source.name = "ofdb"
    del c.source.weights  # one image per category: no instances
    del c.source.flip
    return c
