"""On-device augmentation inside the train step: per-example keys, static shapes, vmapped
(or mapped one image at a time on a CPU: :func:`per_image_mode`).

Per image: random-resized-crop (from the rendered canvas to the model's input size),
horizontal/vertical flips, RandAugment or colour jitter, random erasing.
Per batch: mixup or cutmix with soft targets (timm's convention: with probability ``prob``
one of the two is applied, cutmix with probability ``switch_prob`` when both are on).
Images are ``float32[B, H, W, C]`` in [0, 1] before :func:`normalize`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections

from fractaljax import randaugment, sharding
from fractaljax import render as render_lib
from fractaljax.errors import ConfigError
from fractaljax.losses import smooth_labels


def validate(a: ml_collections.ConfigDict) -> None:
    """Raise :class:`ConfigError` naming the first bad field of an ``augment`` block.

    Called before anything is written: a bad value would otherwise surface only inside the
    traced train step.
    """
    for name in ("crop_scale", "crop_ratio"):
        if len(a[name]) != 2 or not all(isinstance(v, (int, float)) for v in a[name]):
            raise ConfigError(f"augment.{name}={a[name]}: need two numbers, e.g. (0.08, 1.0)")
    lo, hi = a.crop_scale
    if not 0 < lo <= hi <= 1:
        raise ConfigError(f"augment.crop_scale={tuple(a.crop_scale)}: need 0 < lo <= hi <= 1")
    for name in ("hflip", "vflip", "erase_prob", "mix_prob", "mix_switch_prob"):
        if not 0 <= a[name] <= 1:
            raise ConfigError(f"augment.{name}={a[name]}: must be a probability in [0, 1]")
    if not 0 <= a.label_smoothing < 1:
        raise ConfigError(f"augment.label_smoothing={a.label_smoothing}: must be in [0, 1)")
    interpolation(a)
    if a.get("randaugment"):
        randaugment.parse_policy(a.randaugment)
    per_image_mode(a)


PER_IMAGE = ("auto", "vmap", "map")


def per_image_mode(cfg: ml_collections.ConfigDict) -> str:
    """How :func:`augment_batch` runs its per-image transform (``augment.per_image``, in
    every pre-training config; a block without it means ``'auto'``). ``'vmap'``: every image
    at once, so every RandAugment layer runs all three op families and erasing draws noise
    for every image (the select that ``vmap`` makes of a branch). ``'map'``: one image after
    another (``lax.map``), each running only the branches it draws. ``'auto'``: ``'map'`` on
    a single CPU device, where the batch gives no parallelism that the per-image ops lack,
    else ``'vmap'``. The images are the same but for float rounding of the crop (~5e-7),
    which RandAugment's 8-bit levels can turn into a level or more at the odd pixel (under
    0.1% of pixels), the same order of change as another parameter sharding: the field is
    neutral for stored points and resumes (``run_dir.NEUTRAL_FIELDS``). The run header
    prints the mode that ran."""
    mode = cfg.get("per_image", "auto")
    if mode not in PER_IMAGE:
        raise ConfigError(f"augment.per_image={mode!r}: must be one of {PER_IMAGE}")
    if mode == "auto":
        return "map" if sharding.single_cpu_device() else "vmap"
    return mode


def _crop_box(key, h: int, w: int, scale, ratio):
    """An Inception-style crop box ``(y0, x0, ch, cw)`` (floats) of area ~ U(scale) * h * w and
    log-uniform aspect ratio, clipped to the image (the fallback when it does not fit)."""
    k_area, k_ratio, k_y, k_x = jax.random.split(key, 4)
    area = jax.random.uniform(k_area, minval=scale[0], maxval=scale[1]) * h * w
    log_r = jax.random.uniform(k_ratio, minval=jnp.log(ratio[0]), maxval=jnp.log(ratio[1]))
    r = jnp.exp(log_r)
    cw = jnp.clip(jnp.sqrt(area * r), 1.0, w)
    ch = jnp.clip(jnp.sqrt(area / r), 1.0, h)
    y0 = jax.random.uniform(k_y) * (h - ch)
    x0 = jax.random.uniform(k_x) * (w - cw)
    return y0, x0, ch, cw


INTERPOLATIONS = {"bilinear": "linear", "bicubic": "cubic"}


def interpolation(cfg: ml_collections.ConfigDict) -> str:
    """``cfg.interpolation`` ('bicubic' as timm's transform for the paper, or 'bilinear')."""
    name = cfg.get("interpolation", "bilinear")
    if name not in INTERPOLATIONS:
        raise ConfigError(
            f"augment.interpolation={name!r}: must be one of {sorted(INTERPOLATIONS)}"
        )
    return name


def _resample(img_HWC, out_size: int, y0, x0, ch, cw, method: str):
    """The box ``(y0, x0, ch, cw)`` of ``img_HWC`` resized to ``out_size`` (antialiased when
    shrinking, as PIL's resize that torchvision uses)."""
    sy, sx = out_size / ch, out_size / cw
    return jax.image.scale_and_translate(
        img_HWC,
        (out_size, out_size, img_HWC.shape[-1]),
        (0, 1),
        jnp.array([sy, sx]),
        jnp.array([-y0 * sy, -x0 * sx]),
        method=INTERPOLATIONS[method],
        antialias=True,
    )


def random_resized_crop(
    key,
    img_HWC,
    scale=(0.08, 1.0),
    ratio=(3 / 4, 4 / 3),
    out_size: int | None = None,
    method: str = "bilinear",
):
    """Crop a random box and resize it to ``out_size`` (default: the input size). With the
    official 512 px canvas and ``out_size=224`` this is timm's transform reading the PNG."""
    h, w, _ = img_HWC.shape
    y0, x0, ch, cw = _crop_box(key, h, w, scale, ratio)
    return _resample(img_HWC, out_size or h, y0, x0, ch, cw, method)


def resize(images, out_size: int, method: str = "bilinear"):
    """Resize ``float32[..., H, W, C]`` (square) to ``out_size``; a no-op at the same size."""
    h = images.shape[-3]
    if h == out_size:
        return images
    one = lambda im: _resample(im, out_size, 0.0, 0.0, h, h, method)
    flat = images.reshape((-1,) + images.shape[-3:])
    return jax.vmap(one)(flat).reshape(images.shape[:-3] + (out_size, out_size, images.shape[-1]))


def flip(key, img_HWC, p_h: float, p_v: float):
    k_h, k_v = jax.random.split(key)
    img = jnp.where(jax.random.bernoulli(k_h, p_h), img_HWC[:, ::-1], img_HWC)
    return jnp.where(jax.random.bernoulli(k_v, p_v), img[::-1], img)


def color_jitter(key, img_HWC, strength: float):
    """Brightness, contrast and saturation factors ~ U(1 - s, 1 + s), in random order-free
    composition (cheap; the order matters little for gray fractals)."""
    kb, kc, ks = jax.random.split(key, 3)
    f = lambda k: jax.random.uniform(k, minval=1 - strength, maxval=1 + strength)
    img = img_HWC * f(kb)
    mean = img.mean()
    img = (img - mean) * f(kc) + mean
    gray = img.mean(-1, keepdims=True)
    img = (img - gray) * f(ks) + gray
    return jnp.clip(img, 0.0, 1.0)


def pixel_noise(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """``float32[shape]`` standard normal noise, Box-Muller on two counter hashes per pair.

    For augmentation noise, where statistical quality matters and cryptographic strength
    does not: on a CPU it costs a third of ``jax.random.normal`` (threefry), which made
    random erasing a fifth of the paper's augmentation time.
    """
    # The seed is hashed, then xor-ed: added to the counter, two keys would give shifted
    # copies of one sequence.
    seed = render_lib.hash_u32(jax.random.bits(key, (), jnp.uint32))
    n = math.prod(shape)
    i = jnp.arange((n + 1) // 2, dtype=jnp.uint32) * jnp.uint32(2)
    golden = jnp.uint32(0x9E3779B9)
    a, b = (render_lib.hash_u32(((i + j) * golden) ^ seed) for j in (0, 1))
    u1 = (a >> 8).astype(jnp.float32) * 2.0**-24 + 2.0**-25  # (0, 1): log is finite
    u2 = (b >> 8).astype(jnp.float32) * 2.0**-24
    r, theta = jnp.sqrt(-2.0 * jnp.log(u1)), (2.0 * jnp.pi) * u2
    return jnp.concatenate([r * jnp.cos(theta), r * jnp.sin(theta)])[:n].reshape(shape)


def random_erasing(key, img_HWC, p: float, scale=(0.02, 1 / 3), ratio=(0.3, 3.3)):
    """With probability p, replace a random box with Gaussian noise (timm's 'pixel' mode)."""
    h, w, c = img_HWC.shape
    k_on, k_box, k_noise = jax.random.split(key, 3)

    def erase(img):
        y0, x0, ch, cw = _crop_box(k_box, h, w, scale, ratio)
        yy, xx = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
        box = (yy >= y0) & (yy < y0 + ch) & (xx >= x0) & (xx < x0 + cw)
        noise = pixel_noise(k_noise, img.shape) * 0.5 + 0.5  # N(0, 1) after normalize
        return jnp.where(box[..., None], noise, img)

    # A branch: images taken one at a time (augment.per_image) skip the noise when not erased.
    return jax.lax.cond(jax.random.bernoulli(k_on, p), erase, lambda img: img, img_HWC)


def mix(
    key,
    images,
    targets,
    *,
    mixup_alpha: float,
    cutmix_alpha: float,
    prob: float,
    switch_prob: float,
):
    """Mixup or cutmix of the batch with its reverse; targets mixed by the same weight.

    Args:
      images: ``float32[B, H, W, C]``; targets: ``float32[B, L]``.

    Returns:
      ``(images, targets)``; each target row still sums to 1.
    """
    if prob <= 0 or (mixup_alpha <= 0 and cutmix_alpha <= 0):
        return images, targets
    k_on, k_switch, k_lam, k_box = jax.random.split(key, 4)
    b, h, w, _ = images.shape
    use_cutmix = (cutmix_alpha > 0) & (
        (mixup_alpha <= 0) | jax.random.bernoulli(k_switch, switch_prob)
    )
    alpha = jnp.where(use_cutmix, max(cutmix_alpha, 1e-6), max(mixup_alpha, 1e-6))
    lam = jax.random.beta(k_lam, alpha, alpha)
    lam = jnp.where(jax.random.bernoulli(k_on, prob), lam, 1.0)
    other = images[::-1]
    # Cutmix: a box of area (1 - lam) from the other image; lam is then the kept area.
    cut = jnp.sqrt(1.0 - lam)
    ch, cw = jnp.floor(h * cut), jnp.floor(w * cut)
    ky, kx = jax.random.split(k_box)
    cy, cx = jax.random.uniform(ky) * h, jax.random.uniform(kx) * w
    y0, y1 = jnp.clip(cy - ch / 2, 0, h), jnp.clip(cy + ch / 2, 0, h)
    x0, x1 = jnp.clip(cx - cw / 2, 0, w), jnp.clip(cx + cw / 2, 0, w)
    yy, xx = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
    box = (yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1)
    lam_cut = 1.0 - box.mean()
    mixed = jnp.where(
        use_cutmix,
        jnp.where(box[None, :, :, None], other, images),
        lam * images + (1 - lam) * other,
    )
    lam = jnp.where(use_cutmix, lam_cut, lam)
    return mixed, lam * targets + (1 - lam) * targets[::-1]


def normalize(images, mean: float = 0.5, std: float = 0.5):
    """[0, 1] -> the network's input range; the paper uses mean = std = 0.5."""
    return (images - mean) / std


def model_input(images, size: int, method: str = "bilinear"):
    """The model-input contract, one definition for every path that shows images to a
    network without augmenting them (training's evaluation batch and 'mdn' branch, the
    pre-training task's accuracy, inference, downstream data; fine-tuning and probes
    normalise the downstream images this made, at ``size``): ``float32[..., H, W, C]``
    with values in [0, 1] (values outside, e.g. noisy observations, are clipped) ->
    ``float32[..., size, size, C]``, resized with ``method`` (antialiased when shrinking,
    see :func:`interpolation`), normalised."""
    return normalize(to_size(images, size, method))


def to_size(images, size: int, method: str = "bilinear"):
    """:func:`model_input` before the normalisation: clipped to [0, 1], resized."""
    return resize(jnp.clip(images, 0.0, 1.0), size, method)


def augment_batch(
    key,
    images,
    labels,
    num_classes: int,
    cfg: ml_collections.ConfigDict,
    out_size: int | None = None,
    gray: bool = False,
):
    """The pre-training augmentation pipeline of ``config.augment``, in timm's order:
    random-resized-crop from the canvas to ``out_size`` (or a plain resize when the crop is
    off), flips, RandAugment (``cfg.randaugment``, e.g. 'rand-m9-mstd0.5-inc1'; timm then
    skips the colour jitter), colour jitter, random erasing, then mixup / cutmix.

    Args:
      key: PRNG key for this batch.
      images: ``float32[B, H, W, C]`` in [0, 1] (H: the canvas).
      labels: ``int32[B]``.
      out_size: the model's input size; default H.
      gray: every image's channels are equal (:attr:`Source.gray`): the crop is resampled
        from the first channel and copied to the others, a third of the work and the same
        images but for float rounding (the resampling is linear and per channel).

    Returns:
      ``(images float32[B, out, out, C] normalised, targets float32[B, L])``.
    """
    b, h = images.shape[0], images.shape[1]
    out = out_size or h
    method = interpolation(cfg)
    policy = cfg.get("randaugment", "")
    ra = randaugment.parse_policy(policy) if policy else None
    k_img, k_mix = jax.random.split(key)

    def one(k, img):
        k_crop, k_flip, k_jit, k_erase, k_ra = jax.random.split(k, 5)
        c = img.shape[-1]
        # The antialiased crop is a dense resampling of the whole canvas, most of the
        # augmentation's cost: for a gray drawing, one channel carries the image.
        img = img[..., :1] if gray else img
        if cfg.crop_scale[0] < 1.0:
            img = random_resized_crop(
                k_crop, img, tuple(cfg.crop_scale), tuple(cfg.crop_ratio), out, method
            )
        else:
            img = resize(img, out, method)
        img = jnp.broadcast_to(img, img.shape[:-1] + (c,))
        img = flip(k_flip, img, cfg.hflip, cfg.vflip)
        if ra is not None:
            # Fill: the normalisation mean, as timm's create_transform sets img_mean.
            img = randaugment.rand_augment(k_ra, img, **ra, fill=0.5, interpolation=method)
        elif cfg.color_jitter > 0:
            img = color_jitter(k_jit, img, cfg.color_jitter)
        if cfg.erase_prob > 0:
            img = random_erasing(k_erase, img, cfg.erase_prob)
        return img

    keys = jax.random.split(k_img, b)
    if per_image_mode(cfg) == "map":
        images = jax.lax.map(lambda a: one(*a), (keys, images))
    else:
        images = jax.vmap(one)(keys, images)
    targets = smooth_labels(labels, num_classes, cfg.label_smoothing)
    images, targets = mix(
        k_mix,
        images,
        targets,
        mixup_alpha=cfg.mixup_alpha,
        cutmix_alpha=cfg.cutmix_alpha,
        prob=cfg.mix_prob,
        switch_prob=cfg.mix_switch_prob,
    )
    return normalize(images), targets
