"""ViT weights to and from timm (PyTorch) and big_vision-style ``.npz``, with no torch needed.

The Flax ViT of ``fractaljax.models.vit`` and timm's ``VisionTransformer`` compute the same
function once the parameters are laid out as timm's state dict:

========================================  ==============================================
Flax (``params``)                         timm state dict
========================================  ==============================================
``embedding/kernel`` [p, p, C, D] (HWIO)  ``patch_embed.proj.weight`` [D, C, p, p] (OIHW)
``cls`` [1, 1, D]                         ``cls_token``
``pos_embedding`` [1, T, D]               ``pos_embed``
``block{i}/LayerNorm_0``, ``_1``          ``blocks.{i}.norm1``, ``norm2`` (eps 1e-6 both)
``.../MultiHeadDotProductAttention_0``    ``blocks.{i}.attn.qkv`` (q, k, v fused: [3D, D]),
  ``query|key|value/kernel`` [D, H, Dh]   ``blocks.{i}.attn.proj`` [D, D]
  ``out/kernel`` [H, Dh, D]
``.../MlpBlock_0/Dense_0``, ``Dense_1``   ``blocks.{i}.mlp.fc1``, ``fc2``
``encoder_norm``                          ``norm`` (class token) / ``norm`` over all tokens,
                                          then the mean (``global_pool='avg'``,
                                          ``fc_norm=False``, no class token)
``head/kernel`` [D, L]                    ``head.weight`` [L, D]
========================================  ==============================================

Dense kernels are transposed ((in, out) -> (out, in)). Both use exact-erf GELU, LayerNorm eps
1e-6 and a 1/sqrt(Dh) attention scale. Inputs: NHWC in Flax, NCHW in timm, normalised with
mean = std = 0.5 in both.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from fractaljax.errors import CheckpointError

# (width, depth, heads, patch) -> timm's registered model of that shape at 224 px.
TIMM_NAMES = {
    (192, 12, 3, 16): "vit_tiny_patch16_224",
    (384, 12, 6, 16): "vit_small_patch16_224",
    (768, 12, 12, 16): "vit_base_patch16_224",
}


def arch_of(params: dict) -> dict[str, Any]:
    """The architecture read off a Flax ViT's ``params`` (width, depth, heads, ...)."""
    kernel = np.shape(params["embedding"]["kernel"])
    depth = sum(1 for k in params if k.startswith("block"))
    heads = np.shape(params["block0"]["MultiHeadDotProductAttention_0"]["query"]["kernel"])[1]
    mlp = np.shape(params["block0"]["MlpBlock_0"]["Dense_0"]["kernel"])[1]
    tokens = np.shape(params["pos_embedding"])[1]
    pool = "tok" if "cls" in params else "gap"
    grid = int(round((tokens - (pool == "tok")) ** 0.5))
    return dict(
        width=kernel[3], depth=depth, num_heads=heads, mlp_dim=mlp, patch_size=kernel[0],
        in_chans=kernel[2], pool=pool, img_size=grid * kernel[0],
        num_classes=np.shape(params["head"]["kernel"])[1] if "head" in params else 0,
    )  # fmt: skip


def timm_kwargs(arch: dict[str, Any]) -> dict[str, Any]:
    """``timm.models.vision_transformer.VisionTransformer(**kwargs)`` that rebuilds ``arch``."""
    tok = arch["pool"] == "tok"
    return dict(
        img_size=arch["img_size"], patch_size=arch["patch_size"], in_chans=arch["in_chans"],
        num_classes=arch["num_classes"], embed_dim=arch["width"], depth=arch["depth"],
        num_heads=arch["num_heads"], mlp_ratio=arch["mlp_dim"] / arch["width"], qkv_bias=True,
        class_token=tok, global_pool="token" if tok else "avg", fc_norm=False,
    )  # fmt: skip


def timm_name(arch: dict[str, Any]) -> str | None:
    """timm's registered model name for ``arch`` (class-token Ti/S/B 16 at 224 px), or None."""
    key = (arch["width"], arch["depth"], arch["num_heads"], arch["patch_size"])
    ok = arch["pool"] == "tok" and arch["img_size"] == 224 and arch["mlp_dim"] == 4 * arch["width"]
    return TIMM_NAMES.get(key) if ok else None


def _t(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, np.float32).T)


def to_timm(params: dict) -> dict[str, np.ndarray]:
    """Flax ViT ``params`` -> timm state dict (``float32`` NumPy arrays)."""
    arch = arch_of(params)
    d = arch["width"]
    conv = np.asarray(params["embedding"]["kernel"])
    sd = {
        "patch_embed.proj.weight": np.transpose(conv, (3, 2, 0, 1)),
        "patch_embed.proj.bias": params["embedding"]["bias"],
        "pos_embed": params["pos_embedding"],
        "norm.weight": params["encoder_norm"]["scale"],
        "norm.bias": params["encoder_norm"]["bias"],
    }  # fmt: skip
    if arch["pool"] == "tok":
        sd["cls_token"] = params["cls"]
    if "head" in params:
        sd["head.weight"] = _t(params["head"]["kernel"])
        sd["head.bias"] = params["head"]["bias"]
    for i in range(arch["depth"]):
        b, p = params[f"block{i}"], f"blocks.{i}."
        att = b["MultiHeadDotProductAttention_0"]
        qkv = [np.asarray(att[n]["kernel"]).reshape(d, d) for n in ("query", "key", "value")]
        sd[p + "attn.qkv.weight"] = np.concatenate(qkv, 1).T
        sd[p + "attn.qkv.bias"] = np.concatenate(
            [np.asarray(att[n]["bias"]).reshape(d) for n in ("query", "key", "value")]
        )
        sd[p + "attn.proj.weight"] = _t(np.asarray(att["out"]["kernel"]).reshape(d, d))
        sd[p + "attn.proj.bias"] = att["out"]["bias"]
        for j, n in ((0, "norm1"), (1, "norm2")):
            sd[p + n + ".weight"] = b[f"LayerNorm_{j}"]["scale"]
            sd[p + n + ".bias"] = b[f"LayerNorm_{j}"]["bias"]
        for j, n in ((0, "fc1"), (1, "fc2")):
            sd[p + f"mlp.{n}.weight"] = _t(b["MlpBlock_0"][f"Dense_{j}"]["kernel"])
            sd[p + f"mlp.{n}.bias"] = b["MlpBlock_0"][f"Dense_{j}"]["bias"]
    return {k: np.ascontiguousarray(np.asarray(v, np.float32)) for k, v in sd.items()}


def _get(sd: dict, name: str, shape: tuple, path: str) -> np.ndarray:
    if name not in sd:
        raise CheckpointError(
            f"{path}: no tensor {name!r}; not a timm VisionTransformer state dict of this "
            "shape (export it with timm's ViT, or pick the matching model.variant)"
        )
    a = np.asarray(sd[name], np.float32)
    if a.shape != tuple(shape):
        raise CheckpointError(
            f"{path}: {name} has shape {a.shape}, the model expects {tuple(shape)}; the file "
            "is a ViT of another size (model.variant, input size or classes differ)"
        )
    return a


def from_timm(sd: dict[str, Any], like: dict, path: str = "state dict") -> dict:
    """timm state dict -> Flax ``params`` shaped like ``like`` (a Flax ViT's parameters).

    Raises:
      CheckpointError: a tensor is missing or has another shape (another architecture).
    """
    arch = arch_of(like)
    d, h, m, p = arch["width"], arch["num_heads"], arch["mlp_dim"], arch["patch_size"]
    dh = d // h
    g = lambda name, shape: _get(sd, name, shape, path)
    dense = lambda name, n_out, n_in: {
        "kernel": g(name + ".weight", (n_out, n_in)).T.copy(),
        "bias": g(name + ".bias", (n_out,)),
    }
    norm = lambda name: {"scale": g(name + ".weight", (d,)), "bias": g(name + ".bias", (d,))}
    conv = g("patch_embed.proj.weight", (d, arch["in_chans"], p, p))
    out = {
        "embedding": {
            "kernel": np.transpose(conv, (2, 3, 1, 0)),
            "bias": g("patch_embed.proj.bias", (d,)),
        },
        "pos_embedding": g("pos_embed", np.shape(like["pos_embedding"])),
        "encoder_norm": norm("norm"),
    }
    if arch["pool"] == "tok":
        out["cls"] = g("cls_token", (1, 1, d))
    if "head" in like:
        out["head"] = dense("head", arch["num_classes"], d)
    for i in range(arch["depth"]):
        pre = f"blocks.{i}."
        qkv = dense(pre + "attn.qkv", 3 * d, d)  # kernel [D, 3D]: q, k, v side by side
        att = {
            n: {
                "kernel": qkv["kernel"][:, j * d : (j + 1) * d].reshape(d, h, dh),
                "bias": qkv["bias"][j * d : (j + 1) * d].reshape(h, dh),
            }
            for j, n in enumerate(("query", "key", "value"))
        }
        proj = dense(pre + "attn.proj", d, d)
        att["out"] = {"kernel": proj["kernel"].reshape(h, dh, d), "bias": proj["bias"]}
        out[f"block{i}"] = {
            "LayerNorm_0": norm(pre + "norm1"),
            "LayerNorm_1": norm(pre + "norm2"),
            "MultiHeadDotProductAttention_0": att,
            "MlpBlock_0": {
                "Dense_0": dense(pre + "mlp.fc1", m, d),
                "Dense_1": dense(pre + "mlp.fc2", d, m),
            },
        }
    return out


def save_timm(params: dict, path: str, extra: dict[str, Any] | None = None) -> dict:
    """Write ``params`` as a timm safetensors file and ``<path>.json`` beside it (the timm
    model name or the kwargs that rebuild the model, classes, input size, preprocessing).
    Returns that JSON."""
    from safetensors.numpy import save_file

    arch = arch_of(params)
    meta = dict(
        timm_model=timm_name(arch), timm_kwargs=timm_kwargs(arch), num_classes=arch["num_classes"],
        input_size=[arch["in_chans"], arch["img_size"], arch["img_size"]],
        mean=[0.5] * arch["in_chans"], std=[0.5] * arch["in_chans"], interpolation="bicubic",
        **(extra or {}),
    )  # fmt: skip
    save_file(to_timm(params), path, metadata={"format": "pt"})
    with open(os.path.splitext(path)[0] + ".json", "w") as f:
        json.dump(meta, f, indent=2)
    return meta


def load_timm(path: str, like: dict) -> dict:
    """Read a timm ViT safetensors file into Flax ``params`` shaped like ``like``."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    try:
        sd = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    return from_timm(sd, like, path)


def flatten(params: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """``{'block0/LayerNorm_0/scale': array, ...}``: big_vision's ``.npz`` layout."""
    flat = {}
    for k, v in params.items():
        if isinstance(v, dict):
            flat.update(flatten(v, f"{prefix}{k}/"))
        else:
            flat[prefix + k] = np.asarray(v, np.float32)
    return flat


def unflatten(flat: dict[str, np.ndarray]) -> dict:
    """The inverse of :func:`flatten`."""
    out: dict = {}
    for k, v in flat.items():
        node = out
        *parents, leaf = k.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = np.asarray(v)
    return out
