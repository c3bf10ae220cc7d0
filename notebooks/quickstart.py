# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # fractaljax quickstart: 1p-frac pre-training on whatever accelerator this runtime has
#
# One fractal, L perturbations of it, one class each: a ViT learns to tell which
# perturbation drew an image (LPCE), with every batch rendered inside the jit-compiled
# train step. This notebook renders the classes, pre-trains the mini recipe (larger on a
# GPU or TPU), and measures how well its features transfer to Fashion-MNIST with linear
# probes, against a random init of the same model.
#
# On Colab: *Runtime > Change runtime type* picks CPU, GPU or TPU (a TPU VM: JAX finds it
# with no setup call). CI runs this notebook on a CPU with `FRACTALJAX_NOTEBOOK_STEPS` set
# small (`tests/test_notebook.py`); `notebooks/quickstart.py` is its jupytext twin.

# %%
# Install fractaljax unless it is importable already (a checkout with `pip install -e .`).
# On Colab: a checkout uploaded or cloned to ./fractaljax is used, else REPO (a git URL).
import importlib.util
import os
import subprocess
import sys

REPO = os.environ.get("FRACTALJAX_REPO", "https://github.com/fractaljax/fractaljax")
if importlib.util.find_spec("fractaljax") is None:
    # notebooks/ inside a checkout, or a checkout in the working directory (Colab: /content)
    found = [d for d in ("..", "fractaljax") if os.path.exists(os.path.join(d, "pyproject.toml"))]
    target = ["-e", os.path.abspath(found[0])] if found else [f"git+{REPO}"]
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", *target])
    if done.returncode:
        raise SystemExit(f"pip could not install fractaljax from {target[-1]}: set REPO")
    if found:
        sys.path.insert(0, os.path.abspath(found[0]))  # an editable install shows at restart
    importlib.invalidate_caches()

# %% tags=["parameters"]
# Settings. STEPS = 0 picks by backend: the mini recipe's 600 steps on a CPU (about 3
# minutes on 2 cores), 3000 steps with L = 1000 classes at 64 px on a GPU or TPU.
STEPS = int(os.environ.get("FRACTALJAX_NOTEBOOK_STEPS", "0"))
WORKDIR = os.environ.get("FRACTALJAX_NOTEBOOK_WORKDIR", "runs/notebook")
PROBE_TRAIN, PROBE_TEST = 10_000, 10_000  # images for the linear probes

# %%
import jax

backend = jax.default_backend()  # 'cpu', 'gpu' or 'tpu'; no Colab TPU setup call is needed
print(f"JAX {jax.__version__} on {backend}: {jax.device_count()} device(s)", jax.devices()[:2])

# %%
import json

import matplotlib.pyplot as plt
import numpy as np

import fractaljax as fj
from configs import finetune_mini, onepfrac
from fractaljax import downstream, errors, probe, sources, train
from fractaljax import finetune as ft_lib

config = onepfrac.get_config("mini")  # 32 px, L = 100, a 0.8M-parameter ViT
if backend != "cpu":  # an accelerator: more classes, a larger canvas, more steps
    config.source.num_classes = 1000
    config.render.image_size = 64
    config.render.pad = 2
    config.batch_size = 256
    config.total_steps = 3000
    config.log_every = 250
    config.checkpoint_every = 1000
if STEPS:
    config.total_steps = STEPS
    config.log_every = config.checkpoint_every = max(1, STEPS // 2)
config.batch_size -= config.batch_size % jax.device_count()  # splits over every device
print(config.source, config.render.image_size, "px,", config.total_steps, "steps")

# %% [markdown]
# ## The classes: one fractal, perturbed
# Each class is one fixed image (the official data set): the base fractal's six affine
# parameters per map, each scaled by u ~ U(1 - Δ, 1 + Δ), drawn with the official speckled
# 3x3 patches.

# %%
source = fj.make_source(config)
labels = sources.class_grid_labels(source.num_classes, 16)
grid = jax.jit(source.render_labels)(labels, jax.random.key(0))
fig, axes = plt.subplots(2, 8, figsize=(12, 3.3))
for ax, img, label in zip(axes.flat, np.asarray(grid), np.asarray(labels)):
    ax.imshow(img)
    ax.set_title(f"class {label}", fontsize=8)
    ax.axis("off")
plt.show()

# %% [markdown]
# ## Pre-training
# `train_and_evaluate` renders, augments and updates in one compiled step, checkpoints
# with orbax and resumes from `WORKDIR` if run again.

# %%
summary = fj.train_and_evaluate(config, os.path.join(WORKDIR, "pretrain"))
rows = [json.loads(line) for line in open(os.path.join(WORKDIR, "pretrain", "metrics.jsonl"))]
fig, ax = plt.subplots(1, 2, figsize=(10, 3))
ax[0].plot([r["step"] for r in rows], [r["loss"] for r in rows], "o-")
ax[0].set(xlabel="step", ylabel="LPCE (train)")
ax[1].plot([r["step"] for r in rows], [100 * r["eval_accuracy"] for r in rows], "o-")
ax[1].set(xlabel="step", ylabel="clean top-1 (%)", title=f"{source.num_classes} classes")
plt.show()

# %% [markdown]
# ## Transfer: linear probes on a real data set
# Fashion-MNIST from TFDS (downloaded where there is internet and TensorFlow, as on
# Colab; from Debian's `dataset-fashion-mnist` files offline), else scikit-learn's digits.
# A ridge probe per layer, its regulariser and the best layer chosen on held-out training
# images, never on test.

# %%
data_dir = downstream.DEFAULT_DATA_DIR
dataset = "fashion_mnist"
try:
    downstream.prepare(dataset, data_dir)
except errors.UserError:
    try:  # the standard TFDS set (needs internet and TensorFlow)
        import tensorflow_datasets as tfds

        tfds.builder(dataset, data_dir=data_dir, file_format="array_record").download_and_prepare()
    except Exception as e:  # noqa: BLE001 - any failure here means: use the bundled set
        print(f"no {dataset} here ({type(e).__name__}); using scikit-learn's digits")
        dataset = "digits"

pre, model, params = fj.load_pretrained(os.path.join(WORKDIR, "pretrain"))
ft = finetune_mini.get_config()
ft.downstream.dataset = dataset
ft.downstream.test_limit = PROBE_TEST
ft.seed = pre.seed
data = ft_lib.load_downstream(ft, train.input_size(pre), pre.render.channels, PROBE_TRAIN)
rmodel, rparams = ft_lib.random_init(pre, seed=pre.seed)  # the pre-training's starting point
probes = {
    "1p-frac": ft_lib.linear_probe(model, params, data),
    "random init": ft_lib.linear_probe(rmodel, rparams, data),
}
fig, ax = plt.subplots(figsize=(7, 3.5))
for name, layers in probes.items():
    best = probe.best_layer(layers)
    ax.plot(list(layers), [100 * v["accuracy"] for v in layers.values()], "o-", label=name)
    print(f"{name:<12} best layer (on validation) {best}: test top-1 "
          f"{layers[best]['accuracy']:.1%}")  # fmt: skip
ax.set(xlabel="layer", ylabel="probe test top-1 (%)", title=f"linear probes on {dataset}")
ax.legend()
plt.show()

# %% [markdown]
# At this scale pre-training on 1p-frac does not beat the random init (3 seeds in
# `docs/results/README.md`); the paper's gains need its 224 px, 240k-step recipe
# (`configs/onepfrac.py`, a GPU or TPU). Next: `python -m experiments.quickstart` adds
# fine-tuning; `python -m experiments.sweep` runs the paper's sweeps with seeds.
