"""fractaljax: minimal synthetic pre-training (1p-frac, LPCE) in JAX/Flax.

The public API (each name is documented where it is defined)::

  import jax, fractaljax as fj
  from configs import onepfrac

  config = onepfrac.get_config("mini")
  source = fj.make_source(config)                         # 1p-frac, FractalDB, OFDB, ...
  images, labels = source.batch(jax.random.key(0), 0, 64)  # rendered on device, jit-able
  model = fj.make_model(config, source.num_classes)       # a Flax ViT
  params = model.init(jax.random.key(1), images)["params"]
  logits, aux = model.apply({"params": params}, fj.normalize(images))
  loss = fj.lpce(logits, labels).mean()                   # locally perturbed cross-entropy
  feats = fj.extract_features(model, params, images)      # per-layer probe features
  fj.save_timm(params, "model.safetensors")               # for timm / PyTorch

Modules: ifs (fractal parameters), render (vmapped chaos game), sources (synthetic
batches), augment, losses, models.vit, train (pre-training loop), checkpoint, metrics,
sharding, downstream (offline TFDS sets), probe, finetune, inference (the network as a
proposal for its generator), mdn (the continuous head's mixture density over the LIEP
box), interop (timm weights).
"""

from fractaljax.augment import normalize
from fractaljax.ifs import IFS, perturb, sample_sigma_factor
from fractaljax.inference import posterior
from fractaljax.interop import load_timm, save_timm
from fractaljax.losses import lpce
from fractaljax.models import make_model
from fractaljax.probe import extract_features
from fractaljax.render import RenderSpec
from fractaljax.render import render as render_images  # not `render`: that is the module
from fractaljax.sources import make as make_source

# Loaded on first use: the training loop and the run directory bring orbax and
# TensorBoard's writer, which rendering, models and inference do not need.
_LAZY = {
    "load_pretrained": ("fractaljax.run_dir", "load"),
    "train_and_evaluate": ("fractaljax.train", "train_and_evaluate"),
}


def __getattr__(name: str):
    import importlib
    import importlib.util

    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    if importlib.util.find_spec(f"fractaljax.{name}") is not None:  # fj.train, fj.sweeps, ...
        return importlib.import_module(f"fractaljax.{name}")
    raise AttributeError(f"module 'fractaljax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "IFS",
    "RenderSpec",
    "extract_features",
    "load_pretrained",
    "load_timm",
    "lpce",
    "make_model",
    "make_source",
    "normalize",
    "perturb",
    "posterior",
    "render_images",
    "sample_sigma_factor",
    "save_timm",
    "train_and_evaluate",
]
