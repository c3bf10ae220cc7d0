"""The amortized-inference measurements of docs/inference.md, from one 1p-frac pre-training.

  python -m experiments.inference_report --pretrained runs/mini_points/points/<key>/pretrain \
      --sweep_csv docs/results/delta_mini/results.csv --out docs/inference

1. Amortization gain: ESS per sample and per second, network vs prior as proposal, on
   observations drawn from the generator (class latent), and for the continuous latent
   (eps in the LIEP box; the class mixture vs the uniform prior, with Pareto k).
2. Calibration: the network's ECE and reliability diagram on draws of the generator (class
   images + pixel noise) and on held-out renders (a fresh walk and fresh patches), and the
   ECE of the importance-sampled posterior; SBC of the class posterior with the network as
   proposal, with and without the importance correction (rank histograms, 99% band).
3. Identifiability: the Bayes error of the L classes against Delta (as trained, with the
   class-keyed patches, and by shape alone, without patches), beside the pre-training
   accuracy the Delta sweep reached (``--sweep_csv``).
4. Model mismatch: MMD (network embedding and pixel summaries, permutation p-values), ESS
   and log evidence of the generator's images against held-out renders, FractalDB, one
   real image's edges, Fashion-MNIST and digits; and across the sweep's points, the rank
   correlation of the generator's pixel distance to Fashion-MNIST with transfer accuracy.

Writes ``report.json`` and ``calibration.png``, ``sbc.png``, ``bayes_error.png`` into --out.
About 15 minutes on a 2-core CPU.

Why one file of this size: an experiment script whose sections follow the report's, one
function each, for the class and the continuous head.
"""

from __future__ import annotations

import csv
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from configs import fractaldb, onepfrac, real_image
from experiments import _cli as cli
from fractaljax import downstream, run_dir, sources, train
from fractaljax import inference as inf
from fractaljax import render as render_lib
from fractaljax.errors import ConfigError

_PRETRAINED = flags.DEFINE_string("pretrained", None, "A 1p-frac pre-training --workdir.")
_SWEEP_CSV = flags.DEFINE_string("sweep_csv", "", "A Delta sweep's results.csv (optional).")
_OUT = flags.DEFINE_string(
    "out", "out/inference", "Where to write the report (docs/inference holds the committed one)."
)
_NOISE = flags.DEFINE_float("noise", 0.1, "Observation noise std per pixel.")
_POOL = flags.DEFINE_integer("pool", 2, "Summary pooling.")
_SIMS = flags.DEFINE_integer("sims", 1000, "Simulated observations for ESS, ECE and SBC.")
_K = flags.DEFINE_integer("num_samples", 1000, "Importance samples per observation.")
_DRAWS = flags.DEFINE_integer("sbc_draws", 99, "Posterior draws per SBC rank.")
_IS_SIMS = flags.DEFINE_integer(
    "is_sims", 100, "Simulations of the continuous head's SBC with IS (each renders K images)."
)
_SET = flags.DEFINE_integer("set_size", 500, "Images per set in the mismatch table.")
SHARPEN = 20.0
_BAYES_NOISES = flags.DEFINE_list(
    "bayes_noises", ["0.1", "0.3"], "Noise levels of the Bayes error."
)
_DELTAS = flags.DEFINE_list(
    "deltas", ["0.001", "0.01", "0.05", "0.1", "0.2"], "Deltas of the Bayes error and the width."
)
_PROFILE = flags.DEFINE_integer(
    "profile_draws", 8, "Head runs: draws of u whose likelihood profile gives the width."
)
_PAPER_CANVAS = flags.DEFINE_bool(
    "paper_canvas", False, "Head runs: the posterior width also on the official 512 px canvas."
)


def _batched_is(dm, k, num_l):
    @jax.jit
    def run(keys, s_x, log_q):
        return jax.vmap(lambda k_, s, q: inf.discrete_is(k_, dm, s, q, k))(keys, s_x, log_q)

    return run


def amortization(gen, dm, net, key) -> dict:
    """ESS of the class posterior with the network and the prior as proposals."""
    n, k, num_l = _SIMS.value, _K.value, gen.num_classes
    y, x = inf.simulate(key, gen, n)
    s_x = inf.summarize(x, gen.pool)
    keys = jax.random.split(jax.random.fold_in(key, 1), n)
    run = _batched_is(dm, k, num_l)
    logits_fn = jax.jit(lambda x: inf.defensive(net(x)[0]))
    prior_q = jnp.full((n, num_l), -jnp.log(num_l))
    (log_q, t_net_fwd) = inf.timed(logits_fn, x)
    w_net, t_net = inf.timed(run, keys, s_x, log_q)
    w_prior, t_prior = inf.timed(run, keys, s_x, prior_q)
    ess_net, ess_prior = (
        np.asarray(inf.ess(w_net.log_weights)),
        np.asarray(inf.ess(w_prior.log_weights)),
    )
    post = jax.vmap(lambda w: inf.class_probs(w, num_l))(w_net)
    exact = jnp.exp(jax.vmap(dm.exact_log_posterior)(s_x))
    out = dict(
        n=n, k=k,
        ess_network=float(ess_net.mean()), ess_prior=float(ess_prior.mean()),
        seconds_network=t_net + t_net_fwd, seconds_prior=t_prior,
        tv_to_exact_network=float(0.5 * jnp.abs(post - exact).sum(-1).mean()),
        posterior_top1=float(jnp.mean(post.argmax(-1) == y)),
        network_top1=float(jnp.mean(log_q.argmax(-1) == y)),
    )  # fmt: skip
    out["ess_per_second_network"] = out["ess_network"] * k * n / out["seconds_network"]
    out["ess_per_second_prior"] = out["ess_prior"] * k * n / out["seconds_prior"]
    return out, (y, x, s_x, log_q, post)


def continuous(gen, net, key, num: int = 16, width_frac: float = 0.1) -> dict:
    """IS over eps for ``num`` draws of the continuous model: the LPCE network's class
    mixture (std ``width_frac * Delta``, with the prior's defensive share) vs the prior."""
    p = gen.base.maps.size
    k_e, k_x, k_is = jax.random.split(key, 3)
    truth = jax.random.uniform(k_e, (num, p), minval=1 - gen.delta, maxval=1 + gen.delta)
    x = gen.observe(k_x, gen.render_eps(truth))
    s_x = inf.summarize(x, gen.pool)
    log_pi = jax.nn.log_softmax(net(x)[0])
    width = width_frac * gen.delta
    proposals = {
        "network mixture": lambda lp: inf.class_mixture_proposal(gen, lp, width),
        "prior": lambda lp: inf.prior_proposal(gen.delta, p),
    }
    summary = {}
    for name, make in proposals.items():
        one = jax.jit(lambda k, s, lp, f=make: inf.continuous_is(k, gen, s, f(lp), _K.value))
        ws = [one(jax.random.fold_in(k_is, i), s_x[i], log_pi[i]) for i in range(num)]
        summary[name] = weighted_summary(ws, np.asarray(truth))
    prior_error = float(np.linalg.norm(np.asarray(truth) - 1, axis=-1).mean())
    return dict(num=num, width=width, prior_mean_error=prior_error, proposals=summary)


def weighted_summary(ws, truth: np.ndarray) -> dict:
    """Mean ESS, Pareto k (nan-aware, degenerate and unfitted counted apart) and the
    error of the weighted mean of importance samples ``ws`` against ``truth [n, P]``."""
    ess, ks, err = [], [], []
    for w, t in zip(ws, truth):
        ess.append(float(inf.ess(w.log_weights)))
        ks.append(inf.pareto_k(np.asarray(w.log_weights)))
        err.append(float(np.linalg.norm(inf.weighted_moments(w)[0] - t)))
    return dict(ess=float(np.mean(ess)), pareto_k=inf.pareto_summary(ks), error=float(np.mean(err)))


def calibration(gen, dm, net, key, draws) -> dict:
    """The network's and the IS posterior's calibration; SBC with and without IS."""
    y, x, s_x, log_q, post = draws
    n = y.shape[0]
    src_spec = gen.spec
    k_fresh = jax.random.fold_in(key, 7)
    fresh = jax.jit(
        lambda yy: render_lib.render(src_spec, jax.tree.map(lambda a: a[yy], gen.systems), k_fresh)
    )(y)
    fresh_probs = jax.nn.softmax(net(fresh)[0])
    net_probs = jax.nn.softmax(net(x)[0])
    out = dict(
        network_on_draws=inf.calibration(np.asarray(net_probs), np.asarray(y)),
        network_on_fresh_renders=inf.calibration(np.asarray(fresh_probs), np.asarray(y)),
        posterior_on_draws=inf.calibration(np.asarray(post), np.asarray(y)),
    )
    # The network alone is its softmax (not the defensive mixture IS samples from).
    softmax = jax.nn.log_softmax(net(x)[0])
    sharp = inf.defensive(SHARPEN * softmax, 0.01)
    out.update(sbc_rows(key, dm, y, s_x, log_q, softmax, sharp))
    out["sharpened_mean_confidence"] = float(jnp.exp(sharp.max(-1)).mean())
    out["n"] = n
    return out


def sbc_rows(key, dm, y, s_x, log_q, alone, sharp) -> dict:
    """SBC with ``log_q`` as the IS proposal, ``alone`` trusted as the posterior, and the
    over-confident ``sharp`` both ways; each row says which share of simulations had every
    draw equal to the truth (near 1: a point-mass posterior, where SBC cannot fail)."""
    d, k = _DRAWS.value, _K.value
    out = {}
    for name, q, correct, salt in (
        ("sbc_is", log_q, True, 1),
        ("sbc_network_alone", alone, False, 1),
        ("sbc_sharpened_is", sharp, True, 2),
        ("sbc_sharpened_alone", sharp, False, 2),
    ):
        kk = jax.random.fold_in(key, salt)
        ranks, tied = inf.sbc_ranks(kk, dm, y, s_x, q, k, d, correct, return_ties=True)
        out[name] = dict(inf.rank_uniformity(np.asarray(ranks), d), all_draws_tied=float(tied))
    return out


def sbc_spread_case(pre, key, delta: float = 0.01, noise: float = 0.3) -> dict:
    """SBC where it can fail: the class posterior of the shape-only model (no patches) at
    ``delta`` and ``noise``, whose exact posteriors are spread (Bayes error ~0.28 at the
    defaults). Proposals: the prior (+ IS), the exact posterior trusted alone (calibrated
    by construction), and the exact posterior sharpened (x SHARPEN / 5, over-confident),
    which the test must reject alone and accept after IS."""
    c = pre.copy_and_resolve_references()
    c.source.delta, c.render.patch = float(delta), "none"
    gen = inf.generator(sources.make(c), noise, _POOL.value)
    dm = inf.discrete_model(gen)
    y, x = inf.simulate(key, gen, _SIMS.value)
    s_x = inf.summarize(x, gen.pool)
    exact = jax.vmap(dm.exact_log_posterior)(s_x)
    prior = jnp.full_like(exact, -jnp.log(gen.num_classes))
    sharp = inf.defensive(SHARPEN / 5 * exact, 0.01)
    out = dict(delta=delta, noise=noise, bayes_error=float(1 - jnp.exp(exact.max(-1)).mean()))
    rows = sbc_rows(jax.random.fold_in(key, 1), dm, y, s_x, prior, exact, sharp)
    out.update(
        sbc_prior_is=rows["sbc_is"],
        sbc_exact_alone=rows["sbc_network_alone"],
        sbc_sharpened_is=rows["sbc_sharpened_is"],
        sbc_sharpened_alone=rows["sbc_sharpened_alone"],
    )
    return out


def bayes_errors(pre, key) -> list[dict]:
    rows = []
    for value in _DELTAS.value:
        for patches in ("as trained", "shape only"):
            c = pre.copy_and_resolve_references()
            c.source.delta = float(value)
            if patches == "shape only":
                c.render.patch = "none"
            src = sources.make(c)
            for noise in map(float, _BAYES_NOISES.value):
                gen = inf.generator(src, noise, _POOL.value)
                dm = inf.discrete_model(gen)
                r = inf.bayes_error(jax.random.fold_in(key, len(rows)), gen, dm, 2000)
                rows.append(dict(delta=float(value), patches=patches, noise=noise, **r))
                print(f"  Delta {value} {patches} noise {noise}: {r}", flush=True)
    return rows


def _fashion_and_digits(size: int, channels: int, n: int) -> dict:
    sets = {}
    for name in ("fashion_mnist", "digits"):
        split = downstream.load(name, "test", limit=n)
        sets[name] = downstream.to_model_input(split.images, size, channels)
    return sets


def image_sets(pre, gen, key, n: int) -> dict:
    """The images compared with the generator's: ``{name: float32[n, H, W, C]}``."""
    size, ch = gen.spec.image_size, gen.spec.channels
    labels = jnp.arange(n) % gen.num_classes
    held = render_lib.render(
        gen.spec, jax.tree.map(lambda a: a[labels], gen.systems), jax.random.fold_in(key, 3)
    )
    sets = {"1p-frac held-out renders (fresh walk)": held}
    for name, module in (("FractalDB-100", fractaldb), ("one real image (edges)", real_image)):
        c = module.get_config("mini")
        c.render.image_size = size
        src = sources.make(c)
        sets[name] = jax.jit(src.batch, static_argnums=2)(jax.random.fold_in(key, 4), 0, n)[0]
    sets.update(_fashion_and_digits(size, ch, n))
    return sets


def mismatch(pre, gen, dm, net, key) -> list[dict]:
    n = _SET.value
    ref = gen.render_classes(jnp.arange(n) % gen.num_classes)  # the generator's data set
    emb = lambda x: np.concatenate(
        [np.asarray(net(x[i : i + 250])[1]) for i in range(0, len(x), 250)]
    )
    ref_e, ref_s = emb(ref), np.asarray(inf.summarize(ref, gen.pool))
    rows = []
    for name, imgs in image_sets(pre, gen, key, n).items():
        e, s = emb(imgs), np.asarray(inf.summarize(imgs, gen.pool))
        k1, k2, k3 = jax.random.split(jax.random.fold_in(key, len(rows)), 3)
        m_emb = inf.mmd_test(k1, jnp.asarray(ref_e), jnp.asarray(e), 200)
        m_pix = inf.mmd_test(k2, jnp.asarray(ref_s), jnp.asarray(s), 200)
        sub = imgs[:100]
        log_q = inf.defensive(net(sub)[0])
        keys = jax.random.split(k3, len(sub))
        w = _batched_is(dm, _K.value, gen.num_classes)(keys, inf.summarize(sub, gen.pool), log_q)
        rows.append(
            dict(
                set=name,
                mmd2_embedding=m_emb["mmd2"],
                p_embedding=m_emb["p_value"],
                mmd2_pixels=m_pix["mmd2"],
                p_pixels=m_pix["p_value"],
                ess_network=float(inf.ess(w.log_weights).mean()),
                log_evidence=float(np.median(np.asarray(inf.log_evidence(w.log_weights)))),
            )  # fmt: skip
        )
        print(f"  {name}: {rows[-1]}", flush=True)
    return rows


def distance_vs_transfer(pre, key, sweep_csv: str) -> dict:
    """Across the sweep's pre-trained points: the pixel MMD of each point's generator to
    Fashion-MNIST against its transfer accuracies (Spearman rank correlation)."""
    with open(sweep_csv) as f:
        points = [r for r in csv.DictReader(f) if r["init"] == "pretrained"]
    n = _SET.value
    fm = np.asarray(inf.summarize(_fashion_and_digits(32, 3, n)["fashion_mnist"], _POOL.value))
    rows = []
    for i, r in enumerate(points):
        c = pre.copy_and_resolve_references()
        c.source.delta, c.seed = float(r["value"]), int(r["seed"])
        gen = inf.generator(sources.make(c), _NOISE.value, _POOL.value)
        s = np.asarray(
            inf.summarize(gen.render_classes(jnp.arange(n) % gen.num_classes), _POOL.value)
        )
        m = inf.mmd_test(jax.random.fold_in(key, i), jnp.asarray(s), jnp.asarray(fm), 50)
        rows.append(
            dict(
                delta=c.source.delta,
                seed=c.seed,
                mmd2=m["mmd2"],
                probe_best=float(r["probe_best_top1"]),
                finetune=float(r["finetune_top1"]),
            )  # fmt: skip
        )
    return dict(points=rows, **rank_correlations(rows))


def rank_correlations(rows: list[dict]) -> dict:
    """Spearman's rho of the distance with each accuracy over all points, and within seeds
    (both centred on their seed's mean): a seed draws the base fractal, so points of one
    seed share most of their distance, and the pooled rho mostly compares 3 base fractals."""
    from scipy import stats

    x = np.array([r["mmd2"] for r in rows])
    seed = np.array([r["seed"] for r in rows])
    centred = lambda a: a - np.array([a[seed == s].mean() for s in seed])
    out = {}
    for metric in ("probe_best", "finetune"):
        y = np.array([r[metric] for r in rows])
        for name, (a, b) in (("", (x, y)), ("_within_seed", (centred(x), centred(y)))):
            rho, p = stats.spearmanr(a, b)
            out[f"spearman_{metric}{name}"] = dict(rho=float(rho), p_value=float(p), n=len(rows))
    return out


def pretrain_accuracy_by_delta(sweep_csv: str) -> dict:
    if not sweep_csv:
        return {}
    acc = {}
    with open(sweep_csv) as f:
        for r in csv.DictReader(f):
            if r["init"] == "pretrained" and r.get("pretrain_top1"):
                acc.setdefault(float(r["value"]), []).append(float(r["pretrain_top1"]))
    return {str(k): dict(mean=float(np.mean(v)), n=len(v)) for k, v in sorted(acc.items())}


# --- the continuous head (configs/amortized.py) ------------------------------------------------


def head_draws(gen, key, num: int):
    """``num`` draws of the continuous model: ``(u [num, P], images, summaries)``."""
    u, x = inf.simulate_latent(key, gen, num)
    return u, x, inf.summarize(x, gen.pool)


def head_amortization(gen, net, share, key, num: int = 16) -> dict:
    """IS over u for ``num`` draws: the head's mixture (with the prior's share) vs the
    prior as proposal, same K."""
    p = gen.base.maps.size
    u, x, s_x = head_draws(gen, key, num)
    out = net(x)[0]
    proposals = {
        "network head": lambda o: inf.mdn_proposal(o, gen.delta, p, share),
        "prior": lambda o: inf.prior_proposal(gen.delta, p),
    }
    summary = {}
    for name, make in proposals.items():
        one = jax.jit(lambda k, s, o, f=make: inf.continuous_is(k, gen, s, f(o), _K.value))
        ws = [one(jax.random.fold_in(key, 100 + i), s_x[i], out[i]) for i in range(num)]
        summary[name] = weighted_summary(ws, np.asarray(u))
    prior_error = float(np.linalg.norm(np.asarray(u) - 1, axis=-1).mean())
    return dict(num=num, prior_mean_error=prior_error, proposals=summary)


def head_calibration(gen, net, share, key, num: int, num_is: int, sharpen: float = 4.0):
    """SBC per dimension and expected coverage of central intervals for the head alone
    (``num`` simulations) and with IS (``num_is``), for the head made over-confident (its
    component scales / ``sharpen``), which both must flag alone, and for the head
    calibrated by one factor on its scales fitted on ``num`` other simulations
    (``inf.fit_std_scale``: the SBC ranks of validation draws, as temperature scaling).
    Returns the rows and the fit."""
    p, d, delta = gen.base.maps.size, _DRAWS.value, gen.delta
    fit = inf.fit_head_scale(jax.random.fold_in(key, 7), gen, net, share, num)
    u, x, s_x = head_draws(gen, key, num)
    out = net(x)[0]
    keys = jax.random.split(jax.random.fold_in(key, 1), num)

    def alone(o, k, scale):
        return inf.mdn_proposal(o, delta, p, share, 1 / scale).sample(k, d)

    res = {}
    rows = (("head", 1.0), ("calibrated head", 1 / fit["scale"]), ("over-confident head", sharpen))
    for name, scale in rows:
        draws = jax.jit(jax.vmap(lambda o, k, c=scale: alone(o, k, c)))(out, keys)
        res[f"{name} alone"] = continuous_checks(u, draws, d)
    for name, scale in (("head", 1.0), ("over-confident head", sharpen)) if num_is else ():

        def one(k, s, o, scale=scale):
            prop = inf.mdn_proposal(o, delta, p, share, 1 / scale)
            # Another key than the draws of the head alone: the rows are separate evidence.
            w = inf.continuous_is(jax.random.fold_in(k, 2), gen, s, prop, _K.value)
            return inf.resample(jax.random.fold_in(k, 1), w, d), inf.ess(w.log_weights)

        one = jax.jit(one)
        outs = [one(keys[i], s_x[i], out[i]) for i in range(num_is)]
        draws = jnp.stack([o[0] for o in outs])
        res[f"{name} + IS"] = continuous_checks(u[:num_is], draws, d)
        res[f"{name} + IS"]["ess"] = float(np.mean([float(o[1]) for o in outs]))
    keep = ("scale", "chi2", "chi2_at_1", "scale_nll", "nll", "nll_at_1")
    return res, {k: fit[k] for k in keep} | {"n": num}


def continuous_checks(truth, draws, num_draws: int) -> dict:
    """SBC p-values per dimension (and their minimum, Bonferroni over P) and coverage."""
    ranks = np.asarray(inf.continuous_ranks(truth, draws))
    per_dim = [inf.rank_uniformity(ranks[:, i], num_draws) for i in range(ranks.shape[1])]
    ps = np.array([r["p_value"] for r in per_dim])
    cov = inf.coverage(np.asarray(truth), np.asarray(draws))
    width = np.asarray(draws).std(1).mean()
    return dict(
        n=int(ranks.shape[0]),
        sbc_p_values=ps.tolist(),
        sbc_min_p_bonferroni=float(min(1.0, ps.min() * len(ps))),
        sbc_counts=[r["counts"] for r in per_dim],
        sbc_band=per_dim[0]["band"],
        coverage=cov,
        mean_posterior_sd=float(width),
    )


RESOLVED = 10  # effective samples below which a posterior width is not estimated


def profile_row(gen, truths) -> dict:
    """The likelihood profile's answer to "how wide is the posterior of u?" at each of
    ``truths [n, P]`` (fractaljax.inference.likelihood_profile; no sampling, so it resolves
    what IS cannot): the conditional posterior sd of each coordinate over the prior's
    (median and quartiles over truths and coordinates), the share of coordinates narrower
    than the first step (``PROFILE_STEPS[0]``: there the ratio is an upper bound), and the
    pixel noise under which the conditional sd would be half the prior's (median)."""
    prior_sd = gen.delta / np.sqrt(3)
    steps = PROFILE_STEPS[PROFILE_STEPS <= 2 * gen.delta * (1 + 1e-6)]  # float32 steps
    fn = jax.jit(lambda e: inf.summarize(gen.render_eps(e), gen.pool))
    widths, halves = [], []
    for u0 in truths:
        kl = inf.likelihood_profile(fn, u0, steps, gen.var)
        widths.append(inf.profile_width(kl, steps))
        # The divergence scales as 1 / noise^2: the noise at which it is 1/2 nat at half
        # the prior's sd is noise * sqrt(2 KL(prior_sd / 2)).
        halves.append(gen.noise * np.sqrt(2 * inf.divergence_at(kl, steps, prior_sd / 2)))
    ratio = np.concatenate(widths) / prior_sd
    # No interpolation between order statistics: coordinates the profile never resolved
    # (the likelihood flat over the whole box) are inf, and inf - inf is NaN.
    q = np.quantile(ratio, [0.25, 0.5, 0.75], method="inverted_cdf")
    return dict(
        profile_sd_over_prior=float(q[1]),
        profile_sd_over_prior_quartiles=[float(q[0]), float(q[2])],
        profile_below_first_step=float(np.mean(np.concatenate(widths) <= steps[0])),
        profile_first_step=float(steps[0]),
        noise_halving_width=float(np.median(np.concatenate(halves))),
        profile_n=len(truths),
    )


# Steps of the likelihood profile, in units of u: 8 a decade from 1e-6 (float32 resolves
# about 1.2e-7 near u = 1), cut at 2 Delta for each Delta.
PROFILE_STEPS = np.logspace(-6, np.log10(0.4), 46).astype(np.float32)


def identifiability(pre, key, deltas, num: int = 8) -> list[dict]:
    """Posterior width of u against Delta by IS with the prior as proposal (no network:
    the model's own answer), at the canvas's resolution and at the model's input
    resolution (the summary pooled to the input side), on the same draws of u. The width
    is the posterior sd per dimension over the prior's (Delta / sqrt 3): 1 = the image says
    nothing about u. Rows whose mean ESS is under ``RESOLVED`` samples are marked
    ``resolved: False``: there the posterior is narrower than K prior draws can resolve,
    and the weighted sd of a few draws estimates nothing (in either direction). The
    ``profile_*`` fields (:func:`profile_row`, on the first ``--profile_draws`` draws) resolve
    it from below: the conditional sd of each coordinate, which needs no samples."""
    canvas = pre.render.image_size
    size = train.input_size(pre)
    rows = []
    for delta in map(float, deltas):
        c = pre.copy_and_resolve_references()
        c.source.delta = delta
        src = sources.make(c)
        k_delta = jax.random.fold_in(key, int(round(1e6 * delta)))
        for where, pool in (("canvas", max(1, canvas // 128)), ("input", max(1, canvas // size))):
            gen = inf.generator(src, _NOISE.value, pool)
            p = gen.base.maps.size
            u, _, s_x = head_draws(gen, k_delta, num)  # the same u and noise at both
            prior = inf.prior_proposal(gen.delta, p)
            one = jax.jit(lambda k, s, g=gen, q=prior: inf.continuous_is(k, g, s, q, _K.value))
            sds, ess = [], []
            for i in range(num):
                w = one(jax.random.fold_in(key, 1000 + i), s_x[i])
                sds.append(inf.weighted_moments(w)[1].mean())
                ess.append(float(inf.ess(w.log_weights)))
            ratio = float(np.mean(sds) / (delta / np.sqrt(3)))
            ess_mean = float(np.mean(ess))
            rows.append(
                dict(delta=delta, canvas=canvas, resolution=where, pool=pool,
                     sd_over_prior=ratio, ess=ess_mean,
                     resolved=ess_mean * _K.value >= RESOLVED, k=_K.value, n=num,
                     **profile_row(gen, u[: _PROFILE.value]))
            )  # fmt: skip
            print(f"  Delta {delta} {where}: {rows[-1]}", flush=True)
    return rows


def head_mismatch(pre, gen, net, share, key, n: int = 16) -> list[dict]:
    """Log evidence and ESS (head proposal) of real images against generated ones."""
    p = gen.base.maps.size
    size, ch = gen.spec.image_size, gen.spec.channels
    _, gen_x, _ = head_draws(gen, key, n)
    sets = {"generated (fresh u)": gen_x}
    sets.update({k: v[:n] for k, v in _fashion_and_digits(size, ch, n).items()})
    c = real_image.get_config("mini")
    c.render.image_size = size
    src = sources.make(c)
    sets["one real image (edges)"] = jax.jit(src.batch, static_argnums=2)(key, 0, n)[0]
    one = jax.jit(
        lambda k, s, o: inf.continuous_is(
            k, gen, s, inf.mdn_proposal(o, gen.delta, p, share), _K.value
        )
    )
    rows = []
    for name, imgs in sets.items():
        s_x, out = inf.summarize(imgs, gen.pool), net(imgs)[0]
        ws = [one(jax.random.fold_in(key, i), s_x[i], out[i]) for i in range(len(imgs))]
        ev = np.array([float(inf.log_evidence(w.log_weights)) for w in ws])
        rows.append(
            dict(set=name, n=len(ws),
                 log_evidence_median=float(np.median(ev)),
                 log_evidence_per_dim=float(np.median(ev) / s_x.shape[1]),
                 ess=float(np.mean([float(inf.ess(w.log_weights)) for w in ws])))
        )  # fmt: skip
        print(f"  {name}: {rows[-1]}", flush=True)
    return rows


def head_main(pre, model, params, out_dir: str) -> dict:
    """The report of a continuous-head run (configs/amortized.py)."""
    src = sources.make(pre)
    gen = inf.generator(src, _NOISE.value, _POOL.value)
    net = inf.network_fn(pre, model, params)
    share = float(pre.model.mdn_prior_share)
    key = jax.random.key(0)
    report = dict(pretrained=_PRETRAINED.value, head="mdn", noise=gen.noise, pool=gen.pool,
                  delta=gen.delta, seed=pre.seed, k=_K.value)  # fmt: skip
    print("1. amortization (continuous head vs prior)", flush=True)
    report["amortization"] = head_amortization(gen, net, share, jax.random.fold_in(key, 1))
    print(json.dumps(report["amortization"]), flush=True)
    print("2. calibration: SBC per dimension and coverage", flush=True)
    report["calibration"], report["calibration_fit"] = head_calibration(
        gen, net, share, jax.random.fold_in(key, 2), _SIMS.value, _IS_SIMS.value
    )
    fit = report["calibration_fit"]
    print(f"  scale factor fitted on {fit['n']} validation simulations: {fit['scale']:.3f} "
          f"by the SBC ranks (chi-square {fit['chi2_at_1']:.1f} -> {fit['chi2']:.1f}), "
          f"{fit['scale_nll']:.3f} by the log density", flush=True)  # fmt: skip
    for name, r in report["calibration"].items():
        cov = dict(
            zip(r["coverage"]["levels"], np.round(np.mean(r["coverage"]["empirical"], 1), 3))
        )
        print(f"  {name}: SBC min p (Bonferroni) {r['sbc_min_p_bonferroni']:.3g}, "
              f"coverage {cov}", flush=True)  # fmt: skip
    print("3. identifiability: posterior width against Delta", flush=True)
    report["identifiability"] = identifiability(pre, jax.random.fold_in(key, 3), _DELTAS.value)
    if _PAPER_CANVAS.value:  # the official canvas (512 px, pad 6, 100k points), 224 px input
        paper = onepfrac.get_config("vit_ti")
        c = pre.copy_and_resolve_references()
        c.render, c.input_size = paper.render, paper.input_size
        report["identifiability"] += identifiability(c, jax.random.fold_in(key, 4), _DELTAS.value)
    print("4. mismatch", flush=True)
    report["mismatch"] = head_mismatch(pre, gen, net, share, jax.random.fold_in(key, 4))
    return report


def main(argv) -> None:
    del argv
    if not _PRETRAINED.value:
        raise ConfigError("--pretrained is required: a 1p-frac pre-training --workdir")
    if _SWEEP_CSV.value and not os.path.isfile(_SWEEP_CSV.value):
        raise ConfigError(f"--sweep_csv={_SWEEP_CSV.value}: no such file")
    if _IS_SIMS.value > _SIMS.value:
        raise ConfigError(f"--is_sims={_IS_SIMS.value}: at most --sims={_SIMS.value}")
    pre, model, params = run_dir.load(_PRETRAINED.value)
    if train.head(pre) == "mdn":
        os.makedirs(_OUT.value, exist_ok=True)
        t0 = time.time()
        report = head_main(pre, model, params, _OUT.value)
        report["seconds"] = time.time() - t0
        with open(os.path.join(_OUT.value, "report.json"), "w") as f:
            json.dump(report, f, indent=2)
        head_plots(report, _OUT.value)
        print(f"wrote {_OUT.value}/report.json and figures in {report['seconds']:.0f} s")
        return
    src = sources.make(pre)
    gen = inf.generator(src, _NOISE.value, _POOL.value)
    os.makedirs(_OUT.value, exist_ok=True)
    dm = inf.discrete_model(gen)
    net = inf.network_fn(pre, model, params)
    key = jax.random.key(0)
    t0 = time.time()
    report = dict(pretrained=_PRETRAINED.value, noise=gen.noise, pool=gen.pool,
                  delta=gen.delta, num_classes=gen.num_classes, seed=pre.seed)  # fmt: skip
    print("1. amortization", flush=True)
    report["amortization"], draws = amortization(gen, dm, net, jax.random.fold_in(key, 1))
    print(json.dumps(report["amortization"]), flush=True)
    report["continuous"] = continuous(gen, net, jax.random.fold_in(key, 2))
    print(json.dumps(report["continuous"]), flush=True)
    print("2. calibration and SBC", flush=True)
    report["calibration"] = calibration(gen, dm, net, jax.random.fold_in(key, 3), draws)
    for name in ("network_on_draws", "network_on_fresh_renders", "posterior_on_draws"):
        c = report["calibration"][name]
        print(f"  {name}: ECE {c['ece']:.3f} top-1 {c['accuracy']:.3f}", flush=True)
    for name in ("sbc_is", "sbc_network_alone", "sbc_sharpened_is", "sbc_sharpened_alone"):
        r = report["calibration"][name]
        print(f"  {name}: p {r['p_value']:.3g}, all draws tied {r['all_draws_tied']:.2f}")
    report["sbc_spread"] = sbc_spread_case(pre, jax.random.fold_in(key, 7))
    print(f"  SBC where posteriors are spread: {json.dumps(report['sbc_spread'])}", flush=True)
    print("3. Bayes error against Delta", flush=True)
    report["bayes_error"] = bayes_errors(pre, jax.random.fold_in(key, 4))
    report["pretrain_accuracy"] = pretrain_accuracy_by_delta(_SWEEP_CSV.value)
    print("4. mismatch", flush=True)
    report["mismatch"] = mismatch(pre, gen, dm, net, jax.random.fold_in(key, 5))
    if _SWEEP_CSV.value:
        report["distance_vs_transfer"] = distance_vs_transfer(
            pre, jax.random.fold_in(key, 6), _SWEEP_CSV.value
        )
        print(
            json.dumps({k: v for k, v in report["distance_vs_transfer"].items() if k != "points"})
        )
    report["seconds"] = time.time() - t0
    with open(os.path.join(_OUT.value, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    plots(report, _OUT.value)
    print(f"wrote {_OUT.value}/report.json and figures in {report['seconds']:.0f} s")


def plots(report: dict, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cal = report["calibration"]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    titles = {
        "network_on_draws": "network, generator draws",
        "network_on_fresh_renders": "network, fresh-walk renders",
        "posterior_on_draws": "IS posterior, generator draws",
    }
    for ax, (name, title) in zip(axes, titles.items()):
        c = cal[name]
        bins = len(c["count"])
        centres = (np.arange(bins) + 0.5) / bins
        acc = np.nan_to_num(np.asarray(c["bin_accuracy"], float))
        ax.bar(centres, acc, width=1 / bins, edgecolor="k", alpha=0.7, label="accuracy")
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.set_title(f"{title}\nECE {c['ece']:.3f}, top-1 {c['accuracy']:.2f}", fontsize=9)
        ax.set_xlabel("confidence")
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("accuracy")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "calibration.png"), dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2), sharey=True)
    names = {
        "sbc_is": "network + IS",
        "sbc_network_alone": "network alone",
        "sbc_sharpened_is": "over-confident net + IS",
        "sbc_sharpened_alone": "over-confident net alone",
    }
    for ax, (name, title) in zip(axes, names.items()):
        s = cal[name]
        bins = len(s["counts"])
        ax.bar(np.arange(bins), s["counts"], width=1.0, edgecolor="k", alpha=0.7)
        ax.axhspan(*s["band"], color="gray", alpha=0.3, label="99% band")
        ax.set_title(f"{title}: p = {s['p_value']:.2g}", fontsize=9)
        ax.set_xlabel(f"rank bin ({bins} bins)")
    axes[0].set_ylabel("count")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "sbc.png"), dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7.6, 3.6))
    for patches, marker in (("as trained", "o"), ("shape only", "s")):
        for noise, line, size in zip(
            sorted({r["noise"] for r in report["bayes_error"]}), ("-", "--", ":"), (10, 5, 3)
        ):
            rs = [
                r for r in report["bayes_error"] if r["patches"] == patches and r["noise"] == noise
            ]
            # Hollow markers of decreasing size: series that coincide (both 0) stay visible.
            ax.plot(
                [r["delta"] for r in rs], [r["bayes_error"] for r in rs], marker + line,
                markersize=size, markerfacecolor="none",
                label=f"Bayes error, {patches}, noise {noise}",
            )  # fmt: skip
    acc = report.get("pretrain_accuracy") or {}
    if acc:
        d = sorted(float(k) for k in acc)
        ax.plot(
            d, [1 - acc[str(k)]["mean"] for k in d], "k^:", label="1 - pre-training top-1 (sweep)"
        )
    ax.set_xscale("log")
    ax.set_xlabel("Delta")
    ax.set_ylabel("error")
    ax.set_ylim(-0.02, 1.0)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside, not over
    ax.set_title(f"telling {report['num_classes']} classes apart from one image", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "bayes_error.png"), dpi=110, bbox_inches="tight")
    plt.close(fig)


def head_plots(report: dict, out: str) -> None:
    """SBC rank histograms (all dimensions pooled), coverage and the identifiability curve
    of a continuous-head report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cal = report["calibration"]
    fig, axes = plt.subplots(1, len(cal), figsize=(3.4 * len(cal), 3.0), sharey=True)
    from scipy import stats

    for ax, (name, r) in zip(axes, cal.items()):
        counts = np.asarray(r["sbc_counts"])  # [P, bins]
        c = counts.mean(0)
        # The 99% band of a mean of P bins' counts (n P draws in all), not of one bin's.
        p, bins = counts.shape
        lo, hi = stats.binom.interval(0.99, r["n"] * p, 1 / bins)
        ax.bar(np.arange(len(c)), c, width=1.0, edgecolor="k", alpha=0.7)
        ax.axhspan(lo / p, hi / p, color="gray", alpha=0.3)
        ax.set_title(f"{name}\nmin p x P = {r['sbc_min_p_bonferroni']:.2g}", fontsize=9)
        ax.set_xlabel("rank bin (mean over dimensions)")
    axes[0].set_ylabel("count")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "head_sbc.png"), dpi=110)
    plt.close(fig)

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, r in cal.items():
        lv = r["coverage"]["levels"]
        ax.plot(lv, np.mean(r["coverage"]["empirical"], 1), "o-", label=name)
    ax.plot([0.4, 1], [0.4, 1], "k--", lw=1)
    ax.set_xlabel("nominal coverage of central intervals")
    ax.set_ylabel("empirical (mean over dimensions)")
    ax.legend(fontsize=7)
    ident = report["identifiability"]
    top = 3.0  # where an unresolved profile (flat likelihood over the whole box) is drawn
    for canvas in sorted({r.get("canvas", 0) for r in ident}):
        for where, marker in (("canvas", "o-"), ("input", "s--")):
            rs = [r for r in ident if r.get("canvas", 0) == canvas and r["resolution"] == where]
            # The likelihood profile: the conditional sd, median and quartiles over draws
            # and coordinates (a lower bound on the marginal width), resolved everywhere.
            prof = [r for r in rs if "profile_sd_over_prior" in r]
            xs = np.array([r["delta"] for r in prof])
            med = np.minimum([r["profile_sd_over_prior"] for r in prof], top)
            lo, hi = (np.minimum([r["profile_sd_over_prior_quartiles"][i] for r in prof], top)
                      for i in (0, 1))  # fmt: skip
            line = ax2.errorbar(xs, med, yerr=[med - lo, hi - med], fmt=marker, capsize=2,
                                label=f"{canvas} px canvas, {where}: profile")[0]  # fmt: skip
            # IS with K prior draws: the marginal sd where resolved; where not (ESS under
            # RESOLVED samples), only an upper bound of about K^(-1/P) (a posterior of that
            # width per dimension holds about one of K draws), drawn as a 'v'.
            ok = [r for r in rs if r["resolved"]]
            ax2.plot([r["delta"] for r in ok], [r["sd_over_prior"] for r in ok], "x",
                     color=line.get_color())  # fmt: skip
            un = [r for r in rs if not r["resolved"]]
            ax2.plot([r["delta"] for r in un], [r["k"] ** (-1 / 12) for r in un], "v",
                     color=line.get_color(), alpha=0.6)  # fmt: skip
    floor = sorted(
        {(r["delta"], r["profile_first_step"]) for r in ident if "profile_first_step" in r}
    )
    if floor:  # the profile's first step: a width on this line is at most that (an upper bound)
        ax2.plot([d for d, _ in floor], [h / (d / np.sqrt(3)) for d, h in floor], ":", color="gray",
                 lw=1, label="profile's first step (widths on it: upper bounds)")  # fmt: skip
    ax2.text(0.02, 0.98, "v: IS upper bound (unresolved); x: IS resolved", fontsize=7,
             va="top", transform=ax2.transAxes)  # fmt: skip
    ax2.axhline(1.0, color="gray", lw=1)
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("Delta")
    ax2.set_ylabel("posterior sd / prior sd of u")
    ax2.set_ylim(1e-6, top * 1.2)
    ax2.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "head_coverage_identifiability.png"), dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    cli.run(main)
