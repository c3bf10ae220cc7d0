"""Amortized inference over 1p-frac's continuous latent: a ViT whose head is a mixture
density q(u | x) over the multipliers u of the base fractal's 6N parameters, trained by
maximum likelihood on fresh draws of the generator (Le, Baydin, Zinkov & Wood 2017).

  python -m experiments.pretrain --config configs/amortized.py:small --workdir runs/amortized
  python -m experiments.inference_report --pretrained runs/amortized --out out/amortized

Every example is a fresh u ~ U(1 - Delta, 1 + Delta)^{6N} of the base fractal of
``source.seed`` (the one a 1p-frac run of that seed perturbs), drawn on the generator's
fixed walk and patches (``source.latent_walk='fixed'``; 'fresh': new ones each batch) and
observed with pixel noise (``model.mdn_noise``): the joint of latent and observation that
fractaljax.inference's importance sampling inverts. The image is otherwise shown as the
generator drew it (resized to the input, no crop, flip or mixing, since each of those
changes which u drew it). The head is
fractaljax/mdn.py's: K diagonal Gaussians in z = atanh((u - 1) / Delta), so that its support
is the box, with ``model.mdn_prior_share`` of the uniform prior mixed in.

Recipes: 'small' (configs/onepfrac.py:small's model, canvas and input; about 20 min on a
2-core CPU) and 'mini' (a 32 px canvas, a few minutes).
"""

import ml_collections

from configs import onepfrac

RECIPES = ("small", "mini")


def get_config(arg: str = "small") -> ml_collections.ConfigDict:
    if arg not in RECIPES:
        raise ValueError(f"config argument {arg!r}: choose one of {RECIPES}")
    c = onepfrac.get_config(arg)
    c.model.head = "mdn"
    # Trained on observations x = render(u) + noise z, the model importance sampling
    # inverts (experiments.inference_report's default --noise): the proposal of the seed
    # paper learns the joint of latent and observation, not of latent and clean image.
    c.model.mdn_noise = 0.1
    # The fixed data set is not used (every example is a fresh draw): one class, no bank.
    c.source.num_classes = 1
    c.source.bank = False
    # Nothing that changes the image after the generator drew it.
    c.augment.crop_scale = (1.0, 1.0)
    c.augment.hflip = c.augment.vflip = 0.0
    c.augment.randaugment = ""
    c.augment.erase_prob = 0.0
    c.augment.mix_prob = 0.0
    c.augment.label_smoothing = 0.0
    if arg == "small":
        c.total_steps = 3000
        c.warmup_steps = 200
        c.log_every = 250
        c.checkpoint_every = 1000
    else:
        c.total_steps = 1200
        c.warmup_steps = 100
        c.log_every = 100
        c.checkpoint_every = 400
    return c
