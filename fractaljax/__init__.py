"""fractaljax: minimal synthetic pre-training (1p-frac, LPCE) in JAX/Flax.

Modules: ifs (fractal parameters), render (vmapped chaos game), sources (synthetic
batches), augment, losses, models.vit, train (pre-training loop), checkpoint, metrics,
sharding, downstream (offline TFDS sets), probe, finetune.
"""

__version__ = "0.1.0"
