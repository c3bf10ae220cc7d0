"""Import a timm ViT (safetensors) as a fractaljax run, to probe, fine-tune or compare it.

  python -m experiments.import_timm --weights vit_tiny.safetensors --workdir runs/timm_ti
  python -m experiments.probe --pretrained runs/timm_ti          # then as any pre-training
  python -m experiments.import_timm --weights m.safetensors --workdir runs/m \
      --config configs/onepfrac.py:mini --config.model.variant=mu/8

The model is ``--config``'s (default: the paper's ViT-Tiny/16 at 224 px); the class count
comes from the file's head and the pooling from whether it has a class token. A file of
another architecture is one line naming the tensor that does not fit, exit 2. The workdir
gets ``config.json``, ``source.json`` (source ``timm``) and a step-0 checkpoint, which
``experiments.probe`` / ``finetune`` / ``export`` read like a pre-training.
"""

from __future__ import annotations

import json
import os

import ml_collections
import numpy as np
from absl import flags

from experiments import _cli as cli
from fractaljax import interop, run_dir, sharding, train
from fractaljax.checkpoint import Checkpoints
from fractaljax.errors import CheckpointError, ConfigError

_CONFIG = cli.define_config("onepfrac", "The model's config (model.variant, input size).")
_WEIGHTS = flags.DEFINE_string("weights", None, "A timm ViT state dict (.safetensors).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where to write the run.")


def main(argv) -> None:
    del argv
    if not _WEIGHTS.value or not _WORKDIR.value:
        raise ConfigError("--weights and --workdir are required (see --help)")
    if os.path.exists(os.path.join(_WORKDIR.value, "checkpoints")):
        raise ConfigError(f"--workdir={_WORKDIR.value}: already holds a run; pick a new one")
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not os.path.isfile(_WEIGHTS.value):
        raise CheckpointError(f"--weights={_WEIGHTS.value}: no such file")
    try:
        sd = load_file(_WEIGHTS.value)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"--weights={_WEIGHTS.value}: not a safetensors file ({e})") from None
    config = ml_collections.ConfigDict(_CONFIG.value.to_dict())  # unlocked copy
    config.model.pool = "tok" if "cls_token" in sd else "gap"
    num_classes = int(np.shape(sd["head.weight"])[0]) if "head.weight" in sd else 0
    if num_classes < 1:
        raise CheckpointError(f"--weights={_WEIGHTS.value}: no classifier head (head.weight)")
    size = train.input_size(config)
    shape = (size, size, int(np.shape(sd.get("patch_embed.proj.weight", np.zeros((1, 3))))[1]))
    model = train.make_model(config, num_classes)
    tx = train.make_optimizer(config, train.runtime_lr)
    state = train.init_state(config, model, tx, sharding.data_mesh(), shape)
    like = interop.unflatten(interop.flatten(state.params))
    params = interop.from_timm(sd, like, f"--weights={_WEIGHTS.value}")
    state = state.replace(params=params)
    os.makedirs(_WORKDIR.value, exist_ok=True)  # the file fits: now write
    run_dir.record_config(_WORKDIR.value, config)
    with open(os.path.join(_WORKDIR.value, "source.json"), "w") as f:
        json.dump({"name": "timm", "num_classes": num_classes, "image_shape": list(shape)}, f)
    ckpt = Checkpoints(_WORKDIR.value)
    ckpt.save(0, train._checkpointable(state))
    ckpt.close()
    print(
        f"imported {_WEIGHTS.value} as {config.model.variant} ({config.model.pool} pooling, "
        f"{num_classes} classes, {size} px) into {_WORKDIR.value}"
    )


if __name__ == "__main__":
    cli.run(main)
