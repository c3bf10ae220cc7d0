"""The small protocol's question at the paper's model and input, sized for 9 minutes of one
GPU: ViT-Tiny/16 at 224 px pre-trained on 1p-frac at Delta 0.1 and 0.001, the random init
and the drift control, each fine-tuned on 5k labels of real Fashion-MNIST (learning rate
chosen per init on 5,000 held-out images) and probed per layer; prints the table.

  python -m experiments.sweep --config configs/sweep_delta_gpu.py \
      --config.finetune.downstream.source_dir=data/fashion-mnist --workdir runs/delta_gpu

On a lent device machine (no network there; its image has JAX, Flax, Optax, orbax but not
ml_collections or tensorboardX, and reads Fashion-MNIST without TFDS), prepared here once:

  mkdir -p data && cp -r /usr/share/datasets/fashion-mnist data/      # 30 MB, .gitignored
  echo /.whl/ >> .git/info/exclude && python3 -m pip download --no-deps --only-binary=:all: \
      --python-version 3.12 --platform manylinux2014_x86_64 -d .whl \
      ml-collections==1.1.0 tensorboardX==2.6.5

and run with ``carry=['.whl', 'data/fashion-mnist']``:

  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
  export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 && python3 -m experiments.sweep \
      --config configs/sweep_delta_gpu.py --workdir $OUT/delta_gpu \
      --config.finetune.downstream.source_dir=data/fashion-mnist \
      --config.sweep.points_dir=/tmp/points 2>&1 | tee $OUT/log.txt

Pre-training follows configs/onepfrac.py (the paper's recipe: 512 px canvas, random-resized
crop to 224 px, RandAugment, erasing, mixup/cutmix, smoothing, AdamW) with the small
protocol's L and the steps cut to fit: 1,000 steps of batch 256 in bfloat16, the fixed
images kept on the device. Wall time is an estimate, not a measurement (no GPU was lent to
the work that wrote this): from docs/results/bench_h200.log (about 32 ms a pre-training step
in bfloat16 on an H200, more on an H100), compiles of 20-40 s per run, 3 pre-trainings and 8
fine-tunings, about 9 minutes; ``sweep.time_budget_minutes`` stops new points at 8 minutes so
that the finished ones are tabulated inside the device's 10-minute limit. Memory: the
downstream arrays at 224 px (10k probe-train, 5k validation, 10k test images, float32) take
about 15 GB of the GPU.
"""

import ml_collections

from configs import finetune_small, onepfrac


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.pretrain = onepfrac.get_config("vit_ti")
    c.pretrain.source.num_classes = onepfrac.get_config("small").source.num_classes
    c.pretrain.source.bank = True  # the L fixed images rendered once (same images)
    c.pretrain.model.dtype = "bfloat16"
    c.pretrain.total_steps = 1000
    c.pretrain.warmup_steps = 50
    c.pretrain.log_every = 100
    c.pretrain.checkpoint_every = 1000

    c.finetune = finetune_small.get_config()
    c.finetune.batch_size = 128
    c.finetune.log_every = 100

    c.sweep = ml_collections.ConfigDict()
    c.sweep.field = "source.delta"
    c.sweep.grid = (0.1, 0.001)
    c.sweep.seeds = (0,)
    c.sweep.few_labels = 0  # the 1k-label regime: another 8 compiles, past the budget
    c.sweep.random_init = True
    c.sweep.controls = {"drift": (("source.labels", "random"),)}
    c.sweep.paired_with = (0.001,)  # Delta 0.1 against 0.001, seed by seed
    c.sweep.metrics = ("finetune_top1", "probe_best_top1", "probe_last_top1")
    c.sweep.recipe = "vit_ti"
    c.sweep.time_budget_minutes = 8.0
    c.sweep.log_x = True
    c.sweep.workdir = "runs/sweep_delta_gpu"
    c.sweep.points_dir = ""
    c.sweep.store_dir = ""
    return c
