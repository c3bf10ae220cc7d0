"""VisualAtom-k (Takashima et al., "Visual Atoms: Pre-training Vision Transformers with
Sinusoidal Waves", CVPR 2023): k classes of closed orbits whose noise carries two sinusoids,
gray polylines on black, 1000 fixed images a class (official generator:
visual_atomic_renderer/render_VisualAtom.py with make_VisualAtom.sh's settings, in
masora1030/CVPR2023-FDSL-on-VisualAtom; its laws: fractaljax/sources/contours.py).

  python -m experiments.render --config configs/visual_atom.py:small --out out/visual_atom
  python -m experiments.pretrain --config configs/visual_atom.py:small --workdir runs/va

``:vit_ti`` (default) is the paper's ViT-Tiny/16 recipe (512 px canvas, 224 px input),
k = 1000; ``:small``, ``:quick`` and ``:mini`` are 1p-frac's CPU recipes with this source
(configs/radial_contour.py: the same sizes).
"""

import ml_collections

from configs import onepfrac, radial_contour


def get_config(arg: str = "vit_ti") -> ml_collections.ConfigDict:
    c = onepfrac.get_config(arg)  # the recipe 'vit_ti', 'small', 'quick' or 'mini'
    c.source = radial_contour.source_block("visual_atom", c.source.num_classes)
    radial_contour.cpu_sized(c, arg)
    return c
