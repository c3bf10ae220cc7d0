"""1p-frac pre-training of ViT-Tiny/16, the paper's recipe (Nakamura et al., ECCV 2024).

One fractal (sigma 3.5), L = 1000 perturbations (Delta 0.1), 224 px, batch 256, AdamW
(lr 1e-3 x 256/512, wd 0.05), cosine with warm-up, label smoothing 0.1, mixup 0.8 / cutmix
1.0, random-resized-crop [0.08, 1], flips, colour jitter 0.4, random erasing, drop-path 0.1.
The paper trains ~80k epochs of its 1k images (~300k steps of 256); its ViT-Ti then
fine-tunes to 84.2% on CIFAR-100 (scratch: 64.2%).

  python -m experiments.pretrain --config configs/onepfrac_vit_ti.py --workdir runs/vit_ti

Not reproduced here: RandAugment (m9) is not implemented. This config is for a GPU/TPU;
on the 2-core development CPU one step takes tens of seconds.
"""

import ml_collections

from configs import onepfrac


def get_config() -> ml_collections.ConfigDict:
    c = onepfrac.get_config()  # seed, source (1p-frac, L 1000, Delta 0.1), render (224 px)

    c.model = ml_collections.ConfigDict()
    c.model.variant = "Ti/16"
    c.model.pool = "tok"
    c.model.drop_path = 0.1
    c.model.dtype = "float32"  # 'bfloat16' for mixed precision on GPU/TPU

    c.batch_size = 256
    c.total_steps = 300_000
    c.warmup_steps = 5_000
    c.optim = ml_collections.ConfigDict()
    c.optim.name = "adamw"
    c.optim.lr = 1e-3  # for batch 512; scaled by batch_size / 512
    c.optim.weight_decay = 0.05
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.grad_clip_norm = 0.0  # 0: off

    c.augment = ml_collections.ConfigDict()
    c.augment.crop_scale = (0.08, 1.0)
    c.augment.crop_ratio = (3 / 4, 4 / 3)
    c.augment.hflip = 0.5
    c.augment.vflip = 0.5
    c.augment.color_jitter = 0.4
    c.augment.erase_prob = 0.25
    c.augment.mixup_alpha = 0.8
    c.augment.cutmix_alpha = 1.0
    c.augment.mix_prob = 1.0
    c.augment.mix_switch_prob = 0.5
    c.augment.label_smoothing = 0.1

    c.log_every = 500
    c.eval_batch_size = 256
    c.checkpoint_every = 5_000
    c.keep_checkpoints = 3
    return c
