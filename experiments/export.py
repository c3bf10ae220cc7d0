"""Export a pre-trained (or fine-tuned) ViT for timm / PyTorch, or as a big_vision ``.npz``.

  python -m experiments.export --pretrained runs/mini --format timm --out out/model.safetensors
  python -m experiments.export --pretrained runs/mini --format npz --out out/model.npz

``timm``: a safetensors file with timm's ``VisionTransformer`` state dict (no torch needed to
write it) and ``model.json`` beside it: the timm model name where the shape has one
(``vit_tiny_patch16_224``, ``vit_small_patch16_224``, ``vit_base_patch16_224``), the kwargs
that rebuild it in any case, classes, input size and preprocessing (mean = std = 0.5).
Load it in PyTorch with::

  import json, timm, safetensors.torch
  meta = json.load(open("out/model.json"))
  model = timm.models.vision_transformer.VisionTransformer(**meta["timm_kwargs"])
  model.load_state_dict(safetensors.torch.load_file("out/model.safetensors"))

``npz``: the Flax parameters flattened with ``/`` (big_vision's layout).
"""

from __future__ import annotations

import os

import numpy as np
from absl import flags

from experiments import _cli as cli
from fractaljax import interop, run_dir
from fractaljax.errors import ConfigError

_PRETRAINED = flags.DEFINE_string("pretrained", None, "A pre-training (or fine-tuning) --workdir.")
_FORMAT = flags.DEFINE_enum("format", "timm", ["timm", "npz"], "Output format.")
_OUT = flags.DEFINE_string("out", None, "Output file (.safetensors for timm, .npz).")


def main(argv) -> None:
    del argv
    if not _PRETRAINED.value or not _OUT.value:
        raise ConfigError("--pretrained and --out are required (see --help)")
    config, _, params = run_dir.load(_PRETRAINED.value)
    params = interop.unflatten(interop.flatten(params))  # plain NumPy tree
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    if _FORMAT.value == "timm":
        meta = interop.save_timm(params, _OUT.value, {"source": config.source.name})
        name = meta["timm_model"] or "VisionTransformer(**timm_kwargs)"
        print(f"wrote {_OUT.value} ({name}, {meta['num_classes']} classes) and its .json")
    else:
        np.savez(_OUT.value, **interop.flatten(params))
        print(f"wrote {_OUT.value} ({len(interop.flatten(params))} arrays)")


if __name__ == "__main__":
    cli.run(main)
