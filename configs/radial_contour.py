"""Radial contours, RCDB-k (Kataoka et al., "Replacing Labeled Real-image Datasets with
Auto-generated Contours", CVPR 2022): k classes of noisy closed orbits, gray polylines on
white, 1000 fixed images a class (official generator: rcdb_render/make_rcdb.py
of masora1030/CVPR2022-Pretrained-ViT-PyTorch; its laws: fractaljax/sources/contours.py).

  python -m experiments.render --config configs/radial_contour.py:small --out out/rcdb
  python -m experiments.pretrain --config configs/radial_contour.py:small --workdir runs/rcdb
  python -m experiments.pretrain --config configs/radial_contour.py --workdir runs/rcdb1k  # GPU

``:vit_ti`` (default) is the paper's ViT-Tiny/16 recipe (512 px canvas, 224 px input),
k = 1000 (RCDB-1k: 82.4 on CIFAR-100 in the RCDB paper's Table 6, ViT-Tiny fine-tuned);
``:small``, ``:quick`` and ``:mini`` are 1p-frac's CPU recipes with this source, k = 16,
16 and 100, with 256, 256 and 64 fixed images a class kept on the device (official: 1000).
"""

import ml_collections

from configs import onepfrac


def get_config(arg: str = "vit_ti") -> ml_collections.ConfigDict:
    c = onepfrac.get_config(arg)  # the recipe 'vit_ti', 'small', 'quick' or 'mini'
    c.source = source_block("radial_contour", c.source.num_classes)
    cpu_sized(c, arg)
    return c


def cpu_sized(c: ml_collections.ConfigDict, arg: str) -> None:
    """The CPU recipes keep a smaller fixed data set on the device: 256 images a class
    (small, quick) or 64 (mini) instead of the official 1000, rendered once at start-up."""
    if arg != "vit_ti":
        c.source.instances = 256 if arg in ("small", "quick") else 64
        c.source.bank = True


def source_block(name: str, num_classes: int) -> ml_collections.ConfigDict:
    """The official class laws of RCDB (``radial_contour``) or VisualAtom (``visual_atom``:
    configs/visual_atom.py): the ranges of make_rcdb.py's defaults (exe_rcdb_1k.sh) and of
    make_VisualAtom.sh."""
    s = ml_collections.ConfigDict()
    s.name = name
    s.num_classes = num_classes
    rcdb = name == "radial_contour"
    s.vertices = (3, 200) if rcdb else (200, 1000)  # V: RCDB int(expovariate(1/100)) in 3..200
    s.vertex_mean = 100.0  # RCDB's exponential mean (unused by VisualAtom)
    s.contours = (1, 200)  # K ~ randint
    s.perlin = (0.0, 4.0)  # noise amplitude c ~ U
    s.line_width = 0.1  # lw ~ U(0, line_width): the outward drift per move
    s.radius = (0, 100) if rcdb else (10, 60)  # R ~ randint (RCDB: per image)
    s.oval_rate = 2.0  # ox, oy ~ U(1, oval_rate) (RCDB: per image)
    s.start_pos = 400 if rcdb else 512  # centre = (512 + randint(-p, p)) / 2, per image
    s.waves = (0, 20)  # VisualAtom's two frequencies n1 != n2 (unused by RCDB)
    s.background = "white" if rcdb else "black"
    # The official data sets are fixed: 1000 images a class (numof_instances), drawn once.
    s.data = "fixed"  # 'stream': a fresh image of the class every step
    s.instances = 1000
    s.bank = False  # True: the L x instances images rendered once, kept on the device
    # How, not what: the drawing budget, points per pixel of canvas side (a stroke's pixels
    # grow with the side, not the area). 1024: no image of 32 thinned at 512 or 128 px
    # (docs/fidelity.md); fewer points draw faster and thin the busiest images.
    s.stroke_budget = 1024
    return s
