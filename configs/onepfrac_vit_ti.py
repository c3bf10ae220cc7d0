"""1p-frac pre-training of ViT-Tiny/16, the official recipe (Nakamura et al., ECCV 2024;
SUPER-TADORY/1p-frac ``train/pre-train.sh`` with timm's defaults; every value and its source
line: docs/recipe.md).

Data: the official 1p-frac data set (L = 1000 fixed images of one sigma-3.5 fractal's
Delta-0.1 perturbations, 512 px canvas, speckled patches, classes redrawn below 5% fill).
Transform, as timm's create_transform on the 512 px image: random-resized-crop [0.08, 1]
(bicubic, antialiased) to 224 px, h/v flips 0.5, RandAugment rand-m9-mstd0.5-inc1 (timm
then skips the colour jitter 0.4 the script also passes), normalisation 0.5/0.5, random
erasing 0.5; mixup 0.8 / cutmix 1.0 (prob 1, switch 0.5), label smoothing 0.1. ViT-Ti/16,
drop-path 0.1, AdamW (lr 1e-3 x 256/512, wd 0.05, decayed as the official run does: not
biases and norms, but the position embedding and class token, see docs/recipe.md), warm-up
5 epochs (15 steps: 1000 // 256 = 3 steps an epoch) from 1e-6 x 256/512, cosine to
1e-5 x 256/512, 80k epochs = 240k steps of batch 256. The paper's
ViT-Ti then fine-tunes to 84.2% on CIFAR-100 (scratch: 64.2%).

  python -m experiments.pretrain --config configs/onepfrac_vit_ti.py --workdir runs/vit_ti

For a GPU/TPU: on the 2-core development CPU one step takes tens of seconds. Differences
from the official run: the learning rate is stepped every step, not every epoch (3 steps);
batches are drawn with replacement from the L classes, not as epoch permutations.
"""

import ml_collections

from configs import onepfrac


def get_config() -> ml_collections.ConfigDict:
    c = onepfrac.get_config()  # seed, source (1p-frac, L 1000, Delta 0.1), render (512 px)
    c.input_size = 224  # the model's input: the crop of the 512 px canvas is resized to it

    c.model = ml_collections.ConfigDict()
    c.model.variant = "Ti/16"
    c.model.pool = "tok"
    c.model.drop_path = 0.1
    c.model.dtype = "float32"  # 'bfloat16' for mixed precision on GPU/TPU

    c.batch_size = 256
    c.total_steps = 240_000  # 80k epochs x 3 steps
    c.warmup_steps = 15  # 5 epochs
    c.optim = ml_collections.ConfigDict()
    c.optim.name = "adamw"
    c.optim.lr = 1e-3  # for batch 512; scaled by batch_size / 512
    c.optim.warmup_lr = 1e-6  # the warm-up starts here (also scaled)
    c.optim.min_lr = 1e-5  # the cosine ends here (also scaled)
    c.optim.weight_decay = 0.05
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.grad_clip_norm = 0.0  # 0: off
    c.optim.decay_rule = "official"  # decays pos. embedding and class token; 'timm': not

    c.augment = ml_collections.ConfigDict()
    c.augment.crop_scale = (0.08, 1.0)
    c.augment.crop_ratio = (3 / 4, 4 / 3)
    c.augment.hflip = 0.5
    c.augment.vflip = 0.5
    c.augment.interpolation = "bicubic"
    c.augment.randaugment = "rand-m9-mstd0.5-inc1"
    c.augment.color_jitter = 0.4  # passed by pre-train.sh; unused with RandAugment, as timm
    c.augment.erase_prob = 0.5
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
