"""Paper-scale fine-tuning on CIFAR-100 (the paper's main downstream table).

The paper's optimiser: SGD, momentum 0.9, lr 0.01 x batch / 512, weight decay 1e-4,
cosine. Schedule length and augmentation are this config's choice (the paper's text does
not fix them here): 100 epochs of batch 256 (19.5k steps), random-resized-crop, flips,
mixup / cutmix and label smoothing as in pre-training.

Data: TFDS 'cifar100' prepared as array_record in ``downstream.data_dir`` (on a machine
with internet: ``pip install tensorflow-datasets tensorflow-cpu && tfds build cifar100
--file_format=array_record``; copy ~/tensorflow_datasets/cifar100 over). Images are
resized to 224 px and held on the device as float32: the 50k training images take 30 GB
(fits an 80 GB or 139 GB card).
"""

import ml_collections

from configs import finetune_mini


def get_config() -> ml_collections.ConfigDict:
    c = finetune_mini.get_config()
    c.downstream.dataset = "cifar100"
    c.downstream.num_labels = 0  # all 50k
    c.probe_train_limit = 50000
    c.batch_size = 256
    c.total_steps = 19_500  # 100 epochs
    c.warmup_steps = 500
    c.optim.lr = 0.01  # x batch / 512, the paper's
    c.augment.crop_scale = (0.08, 1.0)
    c.augment.mixup_alpha = 0.8
    c.augment.cutmix_alpha = 1.0
    c.augment.mix_prob = 1.0
    c.augment.label_smoothing = 0.1
    c.log_every = 500
    c.checkpoint_every = 2000
    return c
