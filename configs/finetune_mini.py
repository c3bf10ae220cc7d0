"""CPU-sized downstream evaluation: fine-tune on 5k labels of real Fashion-MNIST, and
per-layer linear probes on 10k train / 10k test images.

  python -m experiments.finetune --pretrained runs/mini --workdir runs/mini_ft
  python -m experiments.probe --pretrained runs/mini

Fine-tuning follows the paper's optimiser (SGD, Nesterov momentum 0.9 as timm's 'sgd',
weight decay 1e-4, cosine),
with a learning rate raised for a few hundred steps (0.1 x batch / 512 instead of 0.01).
Images are resized to the pre-trained model's input size, gray replicated to 3 channels,
and normalised as in pre-training. Offline data: see fractaljax/downstream.py.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.downstream = ml_collections.ConfigDict()
    c.downstream.dataset = "fashion_mnist"  # or 'digits', or any array_record TFDS set
    c.downstream.data_dir = ""  # '' = $TFDS_DATA_DIR or ~/tensorflow_datasets
    c.downstream.source_dir = ""  # fashion_mnist idx files; '' = /usr/share/datasets/fashion-mnist
    c.downstream.num_labels = 5000  # labelled fine-tuning subset (0 = all)
    c.downstream.test_limit = 0  # 0 = the whole test split
    c.probe_train_limit = 10000  # train examples for the linear probes

    c.batch_size = 128
    c.total_steps = 300
    c.warmup_steps = 20
    c.optim = ml_collections.ConfigDict()
    c.optim.name = "sgd"
    c.optim.lr = 0.1  # x batch_size / 512
    c.optim.momentum = 0.9
    c.optim.nesterov = True  # timm's 'sgd', which the official fine-tuning uses
    c.optim.weight_decay = 1e-4
    c.optim.decay_rule = "official"
    c.optim.grad_clip_norm = 0.0

    c.augment = ml_collections.ConfigDict()
    c.augment.crop_scale = (1.0, 1.0)
    c.augment.crop_ratio = (3 / 4, 4 / 3)
    c.augment.interpolation = "bilinear"
    c.augment.randaugment = ""  # '' = off
    c.augment.hflip = 0.5
    c.augment.vflip = 0.0
    c.augment.color_jitter = 0.0
    c.augment.erase_prob = 0.0
    c.augment.mixup_alpha = 0.0
    c.augment.cutmix_alpha = 0.0
    c.augment.mix_prob = 0.0
    c.augment.mix_switch_prob = 0.5
    c.augment.label_smoothing = 0.0

    c.log_every = 100
    c.eval_batch_size = 256
    c.checkpoint_every = 300
    c.keep_checkpoints = 1
    return c
