import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from configs import onepfrac
from fractaljax import augment


def _images(b=8, s=16):
    return jax.random.uniform(jax.random.key(0), (b, s, s, 3))


def test_augment_batch_shapes_ranges_and_label_mass():
    cfg = onepfrac.get_config("vit_ti").augment
    images = _images()
    labels = jnp.arange(8) % 5
    x, t = jax.jit(lambda k: augment.augment_batch(k, images, labels, 5, cfg))(jax.random.key(1))
    assert x.shape == images.shape and x.dtype == jnp.float32
    assert t.shape == (8, 5)
    np.testing.assert_allclose(np.asarray(t.sum(-1)), 1.0, rtol=1e-5)
    assert np.isfinite(np.asarray(x)).all()
    # Label smoothing 0.1 over 5 classes: no target falls below 0.02.
    assert float(t.min()) >= 0.02 - 1e-6


def test_no_augmentation_is_identity_up_to_normalisation():
    cfg = ml_collections.ConfigDict(
        dict(
            crop_scale=(1.0, 1.0),
            crop_ratio=(1.0, 1.0),
            hflip=0.0,
            vflip=0.0,
            color_jitter=0.0,
            erase_prob=0.0,
            mixup_alpha=0.0,
            cutmix_alpha=0.0,
            mix_prob=0.0,
            mix_switch_prob=0.5,
            label_smoothing=0.0,
        )
    )
    images = _images()
    x, t = augment.augment_batch(jax.random.key(1), images, jnp.arange(8), 8, cfg)
    np.testing.assert_allclose(np.asarray(x), np.asarray(images) * 2 - 1, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(t), np.eye(8))


def test_full_crop_is_identity_and_small_crop_zooms():
    img = _images(1)[0]
    same = augment.random_resized_crop(jax.random.key(0), img, (1.0, 1.0), (1.0, 1.0))
    np.testing.assert_allclose(np.asarray(same), np.asarray(img), atol=1e-5)
    zoom = augment.random_resized_crop(jax.random.key(0), img, (0.1, 0.1), (1.0, 1.0))
    assert not np.allclose(np.asarray(zoom), np.asarray(img), atol=1e-2)
    assert (
        float(zoom.min()) >= float(img.min()) - 1e-5
        and float(zoom.max()) <= float(img.max()) + 1e-5
    )


def test_flips():
    img = _images(1)[0]
    both = augment.flip(jax.random.key(0), img, 1.0, 1.0)
    np.testing.assert_array_equal(np.asarray(both), np.asarray(img)[::-1, ::-1])


def test_mixup_and_cutmix_mix_targets_by_pixel_share():
    images = jnp.stack([jnp.zeros((8, 8, 3)), jnp.ones((8, 8, 3))])
    targets = jnp.eye(2)
    for mixup, cutmix in [(0.8, 0.0), (0.0, 1.0)]:
        x, t = augment.mix(
            jax.random.key(3),
            images,
            targets,
            mixup_alpha=mixup,
            cutmix_alpha=cutmix,
            prob=1.0,
            switch_prob=0.5,
        )
        np.testing.assert_allclose(np.asarray(t.sum(-1)), 1.0, rtol=1e-6)
        # Image 0 (zeros) mixed with image 1 (ones): its mean is the weight of class 1.
        np.testing.assert_allclose(float(x[0].mean()), float(t[0, 1]), atol=1e-5)


def test_images_taken_one_at_a_time_are_the_vmapped_ones():
    """augment.per_image: 'map' (one image after another, each running only the RandAugment
    family and erasing it draws: the single-CPU default) gives the images of 'vmap' (every
    branch, selected) but for float rounding, with the paper's transform (canvas crop,
    bicubic RandAugment, erasing, mixup/cutmix); 'auto' is 'map' on this one CPU device; a
    bad mode is named; a sweep point's key is the same in every mode."""
    import pytest

    from fractaljax.errors import ConfigError

    cfg = onepfrac.get_config("vit_ti").augment
    cfg.erase_prob = 0.5  # both branches of erasing in a batch of 16
    images = jax.random.uniform(jax.random.key(0), (16, 32, 32, 3))
    labels = jnp.arange(16) % 5

    def run(mode):
        cfg.per_image = mode
        fn = jax.jit(lambda k: augment.augment_batch(k, images, labels, 5, cfg, out_size=16))
        return [np.asarray(a) for a in fn(jax.random.key(3))]

    (x_map, t_map), (x_vmap, t_vmap) = run("map"), run("vmap")
    # Float rounding of the fused crop (~5e-7) only, but RandAugment's 8-bit levels can turn
    # it into a level or more at the odd pixel (posterize and solarize widen it): bound the
    # share of pixels that differ, and the rest within rounding.
    differ = np.abs(x_map - x_vmap) > 1e-5
    assert differ.mean() < 1e-3, differ.mean()
    np.testing.assert_allclose(x_map[~differ], x_vmap[~differ], atol=1e-5)
    np.testing.assert_array_equal(t_map, t_vmap)
    assert augment.per_image_mode(cfg) == "vmap"
    cfg.per_image = "auto"
    assert jax.device_count() > 1 or augment.per_image_mode(cfg) == "map"
    cfg.per_image = "scan"
    with pytest.raises(ConfigError, match="augment.per_image='scan'"):
        augment.validate(cfg)
    # How, not what: a sweep point's key (its stored result) is the same either way.
    from configs import sweep_delta_small
    from fractaljax import sweeps

    sweep = sweep_delta_small.get_config()
    keys = set()
    for mode in ("auto", "vmap", "map"):
        for gray_crop in (True, False):  # augment.gray_crop too: how, not what
            sweep.pretrain.augment.per_image = mode
            sweep.pretrain.augment.gray_crop = gray_crop
            keys.add(sweeps.point_key(sweeps.point_setup(sweep, sweep.sweep.field, 0.1, 0)[2]))
    assert len(keys) == 1


def test_gray_images_are_cropped_from_one_channel_with_the_same_result():
    """augment_batch(gray=True) (Source.gray: 1p-frac, FractalDB, OFDB, contours, edges)
    resamples the crop from one channel: for gray images, the images of gray=False but for
    float rounding, with the paper's transform at a canvas 2x the input; on a colour image
    the flag is visible (only the first channel is read), so it is not ignored."""
    cfg = onepfrac.get_config("vit_ti").augment
    gray = jnp.repeat(jax.random.uniform(jax.random.key(0), (16, 32, 32, 1)), 3, -1)
    labels = jnp.arange(16) % 5

    def run(images, flag):
        fn = jax.jit(lambda k: augment.augment_batch(k, images, labels, 5, cfg, 16, gray=flag))
        return [np.asarray(a) for a in fn(jax.random.key(3))]

    (x1, t1), (x3, t3) = run(gray, True), run(gray, False)
    # As for per_image: RandAugment's 8-bit levels can turn rounding into a level at the
    # odd pixel; bound their share, the rest within rounding.
    differ = np.abs(x1 - x3) > 1e-5
    assert differ.mean() < 1e-3, differ.mean()
    np.testing.assert_allclose(x1[~differ], x3[~differ], atol=1e-5)
    np.testing.assert_array_equal(t1, t3)
    colour = _images(16, 32)
    assert np.abs(run(colour, True)[0] - run(colour, False)[0]).max() > 0.1
    # The train step crops one channel for a gray source unless augment.gray_crop is off.
    from fractaljax import downstream, train

    config = onepfrac.get_config("vit_ti")
    src = downstream.ArraySource(gray, labels, 5, gray=True)
    assert train.gray_crop(config, src)
    assert not train.gray_crop(config, downstream.ArraySource(gray, labels, 5))
    config.augment.gray_crop = False
    assert not train.gray_crop(config, src)


def test_random_erasing_changes_a_box_only_when_on():
    img = jnp.zeros((16, 16, 3))
    on = augment.random_erasing(jax.random.key(0), img, 1.0)
    off = augment.random_erasing(jax.random.key(0), img, 0.0)
    assert float(jnp.abs(on).sum()) > 0 and float(jnp.abs(off).sum()) == 0
    assert float((on != 0).mean()) < 0.5


def test_crop_from_the_canvas_to_the_input_size():
    """The official transform: a crop of the 512 px canvas resized to 224 (here 64 -> 16).
    A full-canvas 'crop' is the whole drawing shrunk (antialiased: a thin line keeps its
    mass instead of vanishing between samples)."""
    canvas = jnp.zeros((64, 64, 1)).at[:, 31, 0].set(1.0)  # a 1 px vertical line
    whole = augment.random_resized_crop(jax.random.key(0), canvas, (1.0, 1.0), (1.0, 1.0), 16)
    assert whole.shape == (16, 16, 1)
    # Mass scales with the area (1/16); point sampling would give 0 or a full-intensity line.
    np.testing.assert_allclose(float(whole.sum()), float(canvas.sum()) / 16, rtol=0.05)
    assert float(whole.max()) < 0.5
    assert float(whole[:, :6].max()) == 0.0 and float(whole[:, 10:].max()) == 0.0
    cubic = augment.random_resized_crop(
        jax.random.key(0), canvas, (1.0, 1.0), (1.0, 1.0), 16, "bicubic"
    )
    assert not np.allclose(np.asarray(cubic), np.asarray(whole))
    cfg = onepfrac.get_config("vit_ti").augment
    x, _ = augment.augment_batch(jax.random.key(1), _images(4, 64), jnp.arange(4), 4, cfg, 16)
    assert x.shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(np.asarray(augment.resize(_images(2), 16)), _images(2))
    # The eval path's shrink (512 -> 224 there): a flat image keeps its value, a checkerboard
    # averages out (antialiased) instead of aliasing into stripes.
    flat = augment.resize(jnp.full((1, 64, 64, 3), 0.3), 16)
    np.testing.assert_allclose(np.asarray(flat), 0.3, atol=1e-5)
    board = (np.indices((64, 64)).sum(0) % 2).astype(np.float32)[None, ..., None]
    np.testing.assert_allclose(
        np.asarray(augment.resize(jnp.asarray(board), 16))[0, 2:-2, 2:-2], 0.5, atol=0.02
    )


def test_randaugment_replaces_colour_jitter_as_timm():
    """With a RandAugment policy the colour jitter is skipped (timm's create_transform)."""
    cfg = ml_collections.ConfigDict(
        dict(
            crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=0.0, vflip=0.0,
            color_jitter=0.4, erase_prob=0.0, mixup_alpha=0.0, cutmix_alpha=0.0,
            mix_prob=0.0, mix_switch_prob=0.5, label_smoothing=0.0,
            randaugment="rand-m9-mstd0.5-inc1-p0.0",
        )
    )  # fmt: skip
    images = _images()
    x, _ = augment.augment_batch(jax.random.key(1), images, jnp.arange(8), 8, cfg)
    np.testing.assert_allclose(np.asarray(x), np.asarray(images) * 2 - 1, atol=1e-6)
    cfg.randaugment = ""
    y, _ = augment.augment_batch(jax.random.key(1), images, jnp.arange(8), 8, cfg)
    assert not np.allclose(np.asarray(y), np.asarray(images) * 2 - 1, atol=1e-3)
    cfg.randaugment = "rand-m9-mstd0.5-inc1"
    z, _ = augment.augment_batch(jax.random.key(1), images, jnp.arange(8), 8, cfg)
    assert not np.allclose(np.asarray(z), np.asarray(images) * 2 - 1, atol=1e-3)


def test_pixel_noise_is_standard_normal_and_independent():
    """The erasing noise (hash + Box-Muller): N(0, 1) by a KS test, no correlation between
    neighbours or between the two halves of a Box-Muller pair, deterministic in the key,
    different across keys, odd sizes included."""
    from scipy import stats

    x = np.asarray(augment.pixel_noise(jax.random.key(0), (101, 99, 3))).ravel()
    assert x.shape == (101 * 99 * 3,) and np.isfinite(x).all()
    assert abs(x.mean()) < 0.02 and abs(x.std() - 1) < 0.02
    assert stats.kstest(x, "norm").pvalue > 0.01
    n = len(x) // 2
    assert abs(np.corrcoef(x[:-1], x[1:])[0, 1]) < 0.02  # neighbours
    assert abs(np.corrcoef(x[:n], x[n : 2 * n])[0, 1]) < 0.02  # cos / sin halves
    again = np.asarray(augment.pixel_noise(jax.random.key(0), (101, 99, 3))).ravel()
    other = np.asarray(augment.pixel_noise(jax.random.key(1), (101, 99, 3))).ravel()
    np.testing.assert_array_equal(x, again)
    assert abs(np.corrcoef(x, other)[0, 1]) < 0.02


def test_every_path_shows_the_model_the_same_input():
    """One model-input contract (augment.model_input): training's evaluation and 'mdn'
    paths (train.model_input), inference (inference.network_fn) and downstream data
    (downstream.to_model_input, normalised by fine-tuning and the probes) give the network
    the same input, at the configured interpolation (bicubic here, where bilinear differs)."""
    from fractaljax import downstream, train
    from fractaljax import inference as inf

    config = onepfrac.get_config("mini")
    config.augment.interpolation = "bicubic"
    config.input_size = 20
    config.model.variant = "test/4"
    u8 = np.asarray(jax.random.randint(jax.random.key(0), (4, 32, 32, 3), 0, 256), np.uint8)
    x = jnp.asarray(u8, jnp.float32) / 255.0
    want = augment.model_input(x, 20, "bicubic")
    assert want.shape == (4, 20, 20, 3)
    assert not np.allclose(want, augment.model_input(x, 20, "bilinear"), atol=1e-3)
    np.testing.assert_array_equal(train.model_input(config, None, x), want)
    data = downstream.to_model_input(u8, 20, 3, "bicubic")
    np.testing.assert_allclose(augment.normalize(data), want, atol=1e-6)
    model = train.make_model(config, 5)
    params = model.init(jax.random.key(1), want)["params"]
    params = jax.tree.map(lambda p: p + 0.01 * jnp.ones_like(p), params)  # a non-zero head
    logits, _ = inf.network_fn(config, model, params)(x)
    np.testing.assert_allclose(logits, model.apply({"params": params}, want)[0], atol=1e-5)
    # Values outside [0, 1] (a noisy observation) are clipped first, on every path.
    noisy = x + 0.5
    np.testing.assert_array_equal(
        train.model_input(config, None, noisy),
        augment.model_input(jnp.clip(noisy, 0, 1), 20, "bicubic"),
    )
