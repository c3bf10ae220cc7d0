"""Posterior over the perturbation that drew an image, with a 1p-frac network as proposal.

  python -m experiments.infer --pretrained runs/mini --synthetic 4 --out out/infer
  python -m experiments.infer --pretrained runs/mini --image my.png --out out/infer

The pre-trained LPCE classifier is the amortized proposal q(class | x) of the run's own
generator (fractaljax.inference); importance sampling with the generator's likelihood
corrects it into the posterior p(class | x). For each image this prints the top classes
with their posterior and network probabilities, the log evidence log p(x), the normalised
ESS with the network and with the prior as proposal, and the ESS per second of each (the
Pareto k diagnostic is left to the continuous latent: with a discrete one, weights of the
same class tie and k-hat is meaningless); it writes ``posterior.json`` and
``posterior.png`` (the image and the renders of its most probable classes, with their
weights) into --out.

``--synthetic N`` draws N images from the generator (class uniform, Gaussian pixel noise of
std --noise); ``--image`` reads one image file (resized to the canvas; a real image is
far from the generator, and its low ESS and log evidence say so).

A continuous-head run (configs/amortized.py, ``model.head='mdn'``) is explained over the
continuous latent instead: the multipliers u of the base's 6N parameters, with the head's
q(u | x) as the proposal (synthetic draws: u uniform on the box). Per image: the posterior
mean and sd of each u against the head's own and (synthetic) the truth, the log evidence,
ESS and Pareto k with the head and with the prior; ``posterior.json`` only. The head is
first calibrated (``--calibrate_sims``: one factor on its scales fitted to fresh
simulations, fractaljax.inference.fit_std_scale), since a trained mixture density is
usually too wide (docs/inference.md, section 5).
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from experiments import _cli as cli
from fractaljax import inference as inf
from fractaljax import run_dir, sources, train
from fractaljax.errors import ConfigError, DataError

_PRETRAINED = flags.DEFINE_string("pretrained", None, "A 1p-frac pre-training --workdir.")
_IMAGE = flags.DEFINE_string("image", None, "An image file to explain.")
_SYNTHETIC = flags.DEFINE_integer("synthetic", 0, "Explain N images drawn from the generator.")
_OUT = flags.DEFINE_string("out", None, "Where to write posterior.json/png.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 1000, "Importance samples K per image.")
_NOISE = flags.DEFINE_float(
    "noise", 0.1, "Observation noise std per pixel (the likelihood's width)."
)
_POOL = flags.DEFINE_integer("pool", 2, "The likelihood compares pool x pool cell means.")
_TOP = flags.DEFINE_integer("top", 5, "Classes shown per image.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the synthetic draws and the samplers.")
_CALIBRATE = flags.DEFINE_integer(
    "calibrate_sims",
    1000,
    "Continuous head: fit one factor on its scales to this many fresh simulations "
    "(inference.fit_std_scale) before using it; 0: the head as trained.",
)


def _check_flags() -> None:
    if not _PRETRAINED.value or not _OUT.value:
        raise ConfigError("--pretrained and --out are required (see --help)")
    if bool(_IMAGE.value) == (_SYNTHETIC.value > 0):
        raise ConfigError("give exactly one of --image=PATH and --synthetic=N (N >= 1)")
    for name, value in (("num_samples", _NUM_SAMPLES.value), ("top", _TOP.value)):
        if value < 1:
            raise ConfigError(f"--{name}={value}: must be >= 1")


def read_image(path: str, size: int, channels: int) -> np.ndarray:
    """An image file as ``float32[size, size, channels]`` in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise DataError(f"--image={path}: no such file")
    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB").resize((size, size), Image.BICUBIC)
            a = np.asarray(im, np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"--image={path}: not a readable image ({e.__class__.__name__})") from None
    return np.broadcast_to(a[..., None], (size, size, channels)) if a.ndim == 2 else a


def _source_name(workdir: str) -> str | None:
    """The source a run trained on, read before anything heavy is loaded."""
    try:
        with open(os.path.join(workdir, "config.json")) as f:
            return json.load(f)["source"]["name"]
    except (OSError, ValueError, KeyError):
        return None  # run_dir.load says what is wrong with the directory


def main(argv) -> None:
    del argv
    _check_flags()
    name = _source_name(_PRETRAINED.value)
    if name not in (None, "onepfrac"):
        raise ConfigError(
            f"--pretrained={_PRETRAINED.value}: a {name} pre-training; inference "
            "needs a 1p-frac run (its classes are perturbations of one fractal)"
        )
    pre, model, params = run_dir.load(_PRETRAINED.value)
    src = sources.make(pre)
    gen = inf.generator(src, _NOISE.value, _POOL.value)
    size, ch = src.spec.image_size, src.spec.channels
    key = jax.random.key(_SEED.value)
    if _IMAGE.value:
        images = jnp.asarray(read_image(_IMAGE.value, size, ch))[None]
        truth = None
    elif train.head(pre) == "mdn":
        p = gen.base.maps.size
        k_u, k_x = jax.random.split(jax.random.fold_in(key, 0))
        d = gen.delta
        truth = jax.random.uniform(k_u, (_SYNTHETIC.value, p), minval=1 - d, maxval=1 + d)
        images = gen.observe(k_x, gen.render_eps(truth))
    else:
        truth, images = inf.simulate(jax.random.fold_in(key, 0), gen, _SYNTHETIC.value)
    os.makedirs(_OUT.value, exist_ok=True)  # inputs are good: now write
    if train.head(pre) == "mdn":
        return explain_continuous(pre, model, params, gen, images, truth, key)
    dm = inf.discrete_model(gen)
    net = inf.network_fn(pre, model, params)
    k, n, num_l = _NUM_SAMPLES.value, images.shape[0], gen.num_classes
    s_x = inf.summarize(images, gen.pool)
    keys = jax.random.split(jax.random.fold_in(key, 1), n)

    @jax.jit
    def with_network(images, s_x, keys):
        log_q = inf.defensive(net(images)[0])
        w = jax.vmap(lambda k_, s, q: inf.discrete_is(k_, dm, s, q, k))(keys, s_x, log_q)
        return w, log_q

    @jax.jit
    def with_prior(s_x, keys):
        log_q = jnp.full((num_l,), -jnp.log(num_l))
        return jax.vmap(lambda k_, s: inf.discrete_is(k_, dm, s, log_q, k))(keys, s_x)

    (w_net, log_q), t_net = inf.timed(with_network, images, s_x, keys)
    w_prior, t_prior = inf.timed(with_prior, s_x, keys)
    exact = np.exp(np.asarray(jax.vmap(dm.exact_log_posterior)(s_x)))
    rows = []
    for i in range(n):
        post = np.asarray(
            inf.class_probs(inf.Weighted(w_net.samples[i], w_net.log_weights[i]), num_l)
        )
        net_p = np.exp(np.asarray(log_q[i]))
        top = np.lexsort((-net_p, -post))[: _TOP.value]  # ties (zeros): the network's order
        row = dict(
            true_class=None if truth is None else int(truth[i]),
            top_classes=top.tolist(),
            posterior=post[top].tolist(),
            exact_posterior=exact[i, top].tolist(),
            network=net_p[top].tolist(),
            log_evidence=float(inf.log_evidence(w_net.log_weights[i])),
            ess_network=float(inf.ess(w_net.log_weights[i])),
            ess_prior=float(inf.ess(w_prior.log_weights[i])),
        )
        rows.append(row)
        head = f"image {i}" + ("" if truth is None else f" (drawn from class {int(truth[i])})")
        print(
            f"{head}: log evidence {row['log_evidence']:.1f}; ESS/K network "
            f"{row['ess_network']:.3f}, prior {row['ess_prior']:.4f}"
        )
        for c, p, q, e in zip(top, row["posterior"], row["network"], row["exact_posterior"]):
            print(f"  class {c:>5}  posterior {p:.3f}  (exact {e:.3f}, network {q:.3f})")
    ess_net = float(np.mean([r["ess_network"] for r in rows]))
    ess_prior = float(np.mean([r["ess_prior"] for r in rows]))
    per_s = dict(network=ess_net * k * n / t_net, prior=ess_prior * k * n / t_prior)
    print(
        f"mean ESS per sample: network {ess_net:.4f}, prior {ess_prior:.4f} "
        f"(x{ess_net / max(ess_prior, 1e-12):.1f}); effective samples per second: network "
        f"{per_s['network']:.0f} ({t_net:.3f} s for {n} x {k}, forward pass included), "
        f"prior {per_s['prior']:.0f} ({t_prior:.3f} s)"
    )
    summary = dict(
        pretrained=_PRETRAINED.value, noise=gen.noise, pool=gen.pool, num_samples=k,
        seconds=dict(network=t_net, prior=t_prior), ess_per_second=per_s, images=rows,
    )  # fmt: skip
    with open(os.path.join(_OUT.value, "posterior.json"), "w") as f:
        json.dump(summary, f, indent=2)
    plot(np.asarray(images), rows, gen, os.path.join(_OUT.value, "posterior.png"))
    print(f"wrote {_OUT.value}/posterior.json and posterior.png")


def explain_continuous(pre, model, params, gen, images, truth, key) -> None:
    """The posterior over u of each image, with a continuous head as the proposal."""

    p, k, share = gen.base.maps.size, _NUM_SAMPLES.value, float(pre.model.mdn_prior_share)
    net = inf.network_fn(pre, model, params)
    out = net(images)[0]
    s_x = inf.summarize(images, gen.pool)
    scale = 1.0
    if _CALIBRATE.value:  # simulations of their own, not the images explained
        fit = inf.fit_head_scale(jax.random.fold_in(key, 3), gen, net, share, _CALIBRATE.value)
        scale = fit["scale"]
        print(f"head calibrated on {_CALIBRATE.value} simulations: scales x {scale:.3f} "
              f"(SBC rank chi-square {fit['chi2_at_1']:.1f} -> {fit['chi2']:.1f})")  # fmt: skip
    head = lambda o: inf.mdn_proposal(o, gen.delta, p, share, scale)
    is_head = jax.jit(lambda kk, s, o: inf.continuous_is(kk, gen, s, head(o), k))
    is_prior = jax.jit(
        lambda kk, s: inf.continuous_is(kk, gen, s, inf.prior_proposal(gen.delta, p), k)
    )
    rows = []
    for i in range(images.shape[0]):
        ki = jax.random.fold_in(key, 10 + i)
        w, w0 = is_head(ki, s_x[i], out[i]), is_prior(ki, s_x[i])
        mean, sd = inf.weighted_moments(w)
        head_draws = np.asarray(
            inf.mdn_proposal(out[i], gen.delta, p, 0.0, scale).sample(
                jax.random.fold_in(ki, 1), 1000
            )
        )
        row = dict(
            truth=None if truth is None else np.asarray(truth[i]).tolist(),
            posterior_mean=mean.tolist(),
            posterior_sd=sd.tolist(),
            head_mean=head_draws.mean(0).tolist(),
            head_sd=head_draws.std(0).tolist(),
            log_evidence=float(inf.log_evidence(w.log_weights)),
            ess_head=float(inf.ess(w.log_weights)),
            ess_prior=float(inf.ess(w0.log_weights)),
            pareto_k_head=inf.pareto_k(np.asarray(w.log_weights)),
            pareto_k_prior=inf.pareto_k(np.asarray(w0.log_weights)),
        )
        rows.append(row)
        err = ""
        if truth is not None:
            t = np.asarray(truth[i])
            err = (
                f"; |mean - u| / Delta: posterior {np.abs(mean - t).mean() / gen.delta:.3f}, "
                f"head {np.abs(head_draws.mean(0) - t).mean() / gen.delta:.3f} (0.5: the prior)"
            )
        print(
            f"image {i}: log evidence {row['log_evidence']:.1f}; ESS/K head "
            f"{row['ess_head']:.4f} (k {row['pareto_k_head']:.2f}), prior "
            f"{row['ess_prior']:.4f} (k {row['pareto_k_prior']:.2f}){err}"
        )
    summary = dict(
        pretrained=_PRETRAINED.value, head="mdn", delta=gen.delta, noise=gen.noise,
        pool=gen.pool, num_samples=k, std_scale=scale, images=rows,
    )  # fmt: skip
    with open(os.path.join(_OUT.value, "posterior.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"wrote {_OUT.value}/posterior.json")


def plot(images: np.ndarray, rows: list[dict], gen: inf.Generator, path: str) -> None:
    """One row per image: the observation, then its top classes' renders with weights."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, top = min(len(rows), 8), len(rows[0]["top_classes"])
    fig, axes = plt.subplots(n, top + 1, figsize=(1.6 * (top + 1), 1.7 * n), squeeze=False)
    for i in range(n):
        renders = np.asarray(gen.render_classes(jnp.asarray(rows[i]["top_classes"])))
        axes[i, 0].imshow(np.clip(images[i], 0, 1))
        t = rows[i]["true_class"]
        axes[i, 0].set_title("observed" + ("" if t is None else f" (class {t})"), fontsize=7)
        for j in range(top):
            axes[i, j + 1].imshow(np.clip(renders[j], 0, 1))
            c, p = rows[i]["top_classes"][j], rows[i]["posterior"][j]
            axes[i, j + 1].set_title(f"class {c}: {p:.2f}", fontsize=7)
    for a in axes.flat:
        a.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    cli.run(main)
