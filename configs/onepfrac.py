"""1p-frac (Nakamura et al., "Scaling Backwards: Minimal Synthetic Pre-training?", ECCV
2024): the source as the official generator makes it, and its training recipes.

  configs/onepfrac.py           = configs/onepfrac.py:vit_ti, the paper's recipe (GPU/TPU)
  configs/onepfrac.py:small     the paper's recipe scaled down for a 2-core CPU (13 min)
  configs/onepfrac.py:quick     small at a third of its steps (the quickstart's, 4 min)
  configs/onepfrac.py:mini      32 px, no crop: the memorisation regime (a baseline)

Source: one sigma-factor fractal (N=2 maps, sigma=3.5) and L=1000 locally perturbed copies
of it (every parameter scaled by u ~ U(1 - Delta, 1 + Delta), Delta=0.1; a class whose image
fills <= 5% is redrawn), one fixed image each: 100k points on a 512 px canvas (pad 6), each
pasting a random 3x3 patch. Look at its classes for three values of Delta:

  python -m experiments.render --config configs/onepfrac.py --out out/onepfrac \
      --vary=source.delta=0.001,0.01,0.1

``vit_ti``: ViT-Tiny/16, the official recipe (SUPER-TADORY/1p-frac ``train/pre-train.sh``
with timm's defaults; every value and its source line: docs/recipe.md). Transform, as timm's
create_transform on the 512 px image: random-resized-crop [0.08, 1] (bicubic, antialiased)
to 224 px, h/v flips 0.5, RandAugment rand-m9-mstd0.5-inc1 (timm then skips the colour
jitter 0.4 the script also passes), normalisation 0.5/0.5, random erasing 0.5; mixup 0.8 /
cutmix 1.0 (prob 1, switch 0.5), label smoothing 0.1. Drop-path 0.1, AdamW (lr 1e-3 x
256/512, wd 0.05, decayed as the official run does: not biases and norms, but the position
embedding and class token, see docs/recipe.md), warm-up 5 epochs (15 steps: 1000 // 256 = 3
steps an epoch) from 1e-6 x 256/512, cosine to 1e-5 x 256/512, 80k epochs = 240k steps of
batch 256. The paper's ViT-Ti then fine-tunes to 84.2% on CIFAR-100 (scratch: 64.2%).
Differences from the official run: the learning rate is stepped every step, not every epoch
(3 steps); batches are drawn with replacement from the L classes, not as epoch permutations.

  python -m experiments.pretrain --config configs/onepfrac.py --workdir runs/vit_ti

``small``: the paper's recipe scaled down, chosen by a search scored on validation data
(configs/search_small.py; docs/results/README.md, "The search for the small protocol"): the
official fixed images (L = 16) on a 128 px canvas, random-resized-crop [0.25, 1] to 32 px,
flips, RandAugment, erasing 0.25, mixup/cutmix, smoothing; a 4-block ViT of width 128 with
16 tokens of 8 px; batch 128, 4,800 steps. Fine-tuned with configs/finetune_small.py.

  python -m experiments.pretrain --config configs/onepfrac.py:small --workdir runs/small

``mini``: 32 px fractals (10k points, 3x3 patches), L = 100 perturbations, a 4-block ViT of
width 128 with 8 px patches, batch 128, 600 steps; augmentation: flips, RandAugment (the
paper's rand-m9-mstd0.5-inc1) and label smoothing; no crop, erasing or mixup/cutmix. It
memorises the fixed images by their speckle (docs/results): the regime the small recipe
was built to leave. With the paper's full pipeline on the 32 px canvas the loss stays at
ln L (measured: 300 steps, loss 4.606 -> 4.604 = ln 100).

  python -m experiments.pretrain --config configs/onepfrac.py:mini --workdir runs/mini
"""

import ml_collections

RECIPES = ("vit_ti", "small", "quick", "mini")


def get_config(arg: str = "vit_ti") -> ml_collections.ConfigDict:
    """The 1p-frac source with the recipe ``arg``: 'vit_ti' (the paper's), 'small' (its
    scale-down for a CPU), 'quick' (the small one at a third of its steps: the quickstart's)
    or 'mini' (the memorisation regime, CPU)."""
    if arg not in RECIPES:
        raise ValueError(f"config argument {arg!r}: choose one of {RECIPES}")
    c = source_config()
    vit_ti(c)
    if arg == "mini":
        mini(c)
    elif arg in ("small", "quick"):
        small(c)
        if arg == "quick":
            quick(c)
    return c


def source_config() -> ml_collections.ConfigDict:
    """Seed, the 1p-frac source and its rendering, as the official generator."""
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
    # 'true'; 'random': the drift control, labels drawn independently of the images (the
    # same optimiser steps on data with nothing to learn)
    c.source.labels = "true"
    # The walk of the continuous latent's draws (model.head='mdn', configs/amortized.py):
    # 'fixed', the generator's that inference inverts; 'fresh', a new one each batch
    c.source.latent_walk = "fixed"

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
    # Same drawings: 'scatter_map' (one CPU device), 'scatter' (GPU), 'sort' (TPU: no scatter).
    c.render.rasterizer = "auto"
    return c


def vit_ti(c: ml_collections.ConfigDict) -> None:
    """The official ViT-Tiny/16 recipe, in place."""
    c.input_size = 224  # the model's input: the crop of the 512 px canvas is resized to it

    c.model = ml_collections.ConfigDict()
    c.model.variant = "Ti/16"
    c.model.pool = "tok"
    c.model.drop_path = 0.1
    c.model.dtype = "float32"  # 'bfloat16' for mixed precision on GPU/TPU
    # 'big_vision' (Xavier kernels, zero head); 'timm': timm's init, as the official code
    # (which trains timm's ViT) starts from; see fractaljax.models.vit.initializers.
    c.model.init = "big_vision"
    # 'classes': the L perturbation classes (LPCE, the paper); 'mdn': a mixture density over
    # the continuous multipliers u (configs/amortized.py; fractaljax/mdn.py)
    c.model.head = "classes"
    c.model.mdn_components = 8  # Gaussians of the 'mdn' head
    c.model.mdn_prior_share = 0.05  # the uniform prior's share: importance weights <= 20
    c.model.mdn_noise = 0.0  # pixel noise of the observations the 'mdn' head learns from

    c.batch_size = 256  # global: split over every device of every process
    # 'fsdp': parameters and optimiser state split over the devices too (B/16 and up)
    c.param_sharding = "replicated"
    c.fsdp_min_size = 2**14  # arrays with fewer elements stay replicated under 'fsdp'
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
    # 'auto': the per-image transform one image at a time on a single CPU device, vmapped
    # elsewhere; the same images but for float rounding (augment.per_image_mode).
    c.augment.per_image = "auto"
    # A gray drawing's crop resampled from one channel and copied to the others (Source.gray):
    # a third of the work, the same images but for float rounding. False: every channel.
    c.augment.gray_crop = True

    # Evaluators the loop runs every N steps (fractaljax/evals; 0: off), e.g.
    # --config.evals.probe.every=1200: measuring only, weights and sweep keys unchanged.
    c.evals = ml_collections.ConfigDict()
    c.evals.task = dict(every=0, num=2048)  # clean and redrawn top-1 on the classes
    c.evals.probe = dict(  # per-layer ridge probes, validation top-1 (never test)
        every=0, dataset="fashion_mnist", data_dir="", source_dir="", num_train=2000,
        val_size=1000, seed=0,
    )  # fmt: skip
    c.evals.finetune = dict(  # a short fine-tuning (configs/<recipe>.py), validation top-1
        every=0, recipe="finetune_small", dataset="fashion_mnist", data_dir="", source_dir="",
        num_labels=1000, val_size=1000, steps=150, lr=0.1, seed=0,
    )  # fmt: skip

    c.log_every = 500
    c.eval_batch_size = 256
    c.checkpoint_every = 5_000
    c.keep_checkpoints = 3


def mini(c: ml_collections.ConfigDict) -> None:
    """The CPU-sized recipe, in place, on top of :func:`vit_ti`."""
    c.source.num_classes = 100

    # A 32 px canvas, not the official 512 px one: the official images area-downsampled to
    # 32 px are faint (mean intensity 0.03) and were not learned in a 1,200-step probe.
    c.render.image_size = 32
    c.input_size = 0  # the canvas's: no resize
    c.render.walkers = 250  # 10k points: a 32 px canvas saturates long before 100k
    c.render.steps = 40
    c.render.pad = 1

    c.model.variant = "mu/8"  # width 128, 4 blocks, 4 heads; 16 tokens (fast on CPU)
    c.model.drop_path = 0.0

    c.batch_size = 128
    c.total_steps = 600
    c.warmup_steps = 50
    c.optim.lr = 2e-3  # x 128/512 -> 5e-4

    c.augment.crop_scale = (1.0, 1.0)  # off
    c.augment.color_jitter = 0.0
    c.augment.erase_prob = 0.0
    c.augment.mix_prob = 0.0  # no mixup / cutmix

    c.log_every = 50
    c.eval_batch_size = 256
    c.checkpoint_every = 200


def small(c: ml_collections.ConfigDict) -> None:
    """The paper's recipe scaled down for a 2-core CPU, in place, on top of :func:`vit_ti`.

    What is kept: the official fixed data set drawn on a canvas 4x the model input and
    cropped with random-resized-crop (antialiased), flips, RandAugment, random erasing,
    mixup/cutmix, label smoothing, AdamW with warm-up and cosine. What is shrunk: the canvas
    (128 px), the input (32 px), the model (``mu/8``: 4 blocks of width 128, 16 tokens of 8 px;
    ViT-Ti/16 sees 196 of 16 px), L (16), the batch (128) and the steps (4,800); how each was
    chosen: docs/results/README.md ("The search for the small protocol").
    """
    c.source.num_classes = 16
    c.source.bank = True  # the L fixed images rendered once, kept on the device (same images)

    c.render.image_size = 128  # the canvas, 4x the input as 512 px is 2.3x 224 px
    c.render.pad = 3
    c.input_size = 32

    # Width 128, 4 blocks, 4 heads; 16 tokens of 8 px: a step costs a quarter of 64 tokens of
    # 4 px, and 4x the steps in the same time beat them in the search (variant E vs A).
    c.model.variant = "mu/8"
    c.model.drop_path = 0.0

    c.batch_size = 128
    c.total_steps = 4800
    c.warmup_steps = 400
    c.optim.lr = 2e-3  # x 128/512 -> 5e-4

    c.augment.crop_scale = (0.25, 1.0)
    c.augment.erase_prob = 0.25
    c.augment.color_jitter = 0.0  # unused with RandAugment, as timm

    c.log_every = 400
    c.eval_batch_size = 256
    c.checkpoint_every = 1600


def quick(c: ml_collections.ConfigDict) -> None:
    """:func:`small` at a third of its steps (1,600), in place: the quickstart's recipe,
    about 4 minutes of pre-training on a 2-core CPU where small takes 13."""
    c.total_steps = 1600
    c.warmup_steps = 130
    c.log_every = 200
    c.checkpoint_every = 400
