"""VLA registry, LoRA wrapping, foreign-checkpoint initialisation and fine-tuned checkpoints.

* :data:`VLAS` maps ``pi0`` / ``openvla`` to a :class:`VLAEntry`: config class, policy builder,
  the converter for the released checkpoint layout (lerobot Pi0, ``openvla/openvla-7b``).
* :func:`apply_lora` wraps ``policy.model`` with peft: LoRA on the language model(s), the swapped
  encoder, its projector and the action heads in ``modules_to_save`` (the encoder is left out, so
  frozen, when ``backbone.freeze``).
* :func:`save_finetuned` / :func:`load_finetuned`: a self-describing directory
  (``policy.json`` + ``model.safetensors`` + ``tokenizer/``). LoRA is merged before saving, so the
  weights use the plain key names of :class:`~avbr.adapters.vla.pi0.Pi0Model` /
  :class:`~avbr.adapters.vla.openvla.OpenVLAModel` and reload strictly without peft.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from avbr.registry import Registry

from .keymap import load_converted
from .normalize import Normalizer
from .openvla import OPENVLA_NEW_PREFIXES, OpenVLAConfig, OpenVLAPolicy, convert_openvla_7b
from .pi0 import PI0_NEW_PREFIXES, Pi0Config, Pi0Policy, convert_lerobot_pi0
from .policy import VLAPolicy
from .tokenizer import load_tokenizer


#: version of the :func:`save_finetuned` layout; 2 = the backbone is an ``avbr.adapters`` EncoderConfig.
FORMAT_VERSION = 2


@dataclass(frozen=True)
class VLAEntry:
    """One VLA family.

    Attributes:
        config_cls: its config dataclass.
        build: ``(config, tokenizer, normalizers) -> policy``.
        fit_normalizers: ``(config, actions [M, A], states [M, S]) -> {name: Normalizer}``.
        train_chunk: ``config -> actions per training sample``.
        convert: released checkpoint state dict -> our keys.
        new_prefixes: key prefixes of the modules the swap adds (not in released checkpoints).
    """

    config_cls: type
    build: Callable[[Any, Any, dict[str, Normalizer]], VLAPolicy]
    fit_normalizers: Callable[[Any, Tensor, Tensor], dict[str, Normalizer]]
    train_chunk: Callable[[Any], int]
    convert: Callable[[dict[str, Tensor]], dict[str, Tensor]]
    new_prefixes: tuple[str, ...]


VLAS: Registry = Registry("VLA")
VLAS.register("pi0")(
    VLAEntry(
        Pi0Config,
        lambda cfg, tok, norms: Pi0Policy(cfg, tok, norms["state"], norms["action"]),
        # lerobot Pi0: MEAN_STD for STATE and ACTION
        lambda cfg, actions, states: {
            "state": Normalizer.fit(states, "mean_std"),
            "action": Normalizer.fit(actions, "mean_std"),
        },
        lambda cfg: cfg.chunk_size,
        convert_lerobot_pi0,
        PI0_NEW_PREFIXES,
    )
)
VLAS.register("openvla")(
    VLAEntry(
        OpenVLAConfig,
        lambda cfg, tok, norms: OpenVLAPolicy(cfg, tok, norms["action"]),
        lambda cfg, actions, states: {"action": Normalizer.fit(actions, "q01_q99", cfg.normalize_mask)},
        lambda cfg: 1 if cfg.action_head == "tokens" else cfg.oft_chunk,
        convert_openvla_7b,
        OPENVLA_NEW_PREFIXES,
    )
)


def make_config(name: str, fields: dict[str, Any]) -> Any:
    """The config dataclass of VLA ``name`` from a plain dict; unknown fields raise with the valid ones."""
    cls = VLAS.get(name).config_cls
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - valid)
    if unknown:
        raise ValueError(f"unknown {name} config fields {unknown}; valid: {sorted(valid)}")
    return cls(**fields)


def build_policy(name: str, cfg: Any, tokenizer, normalizers: dict[str, Normalizer]) -> VLAPolicy:
    """Build the policy of VLA ``name``."""
    return VLAS.get(name).build(cfg, tokenizer, normalizers)


def load_released(name: str, policy: VLAPolicy, path: str | Path) -> list[str]:
    """Initialise ``policy.model`` from a released checkpoint (a ``.safetensors`` file or a
    directory of shards) through the VLA's converter; strict. Returns the keys kept at init."""
    path = Path(path)
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise FileNotFoundError(f"no .safetensors file at {path}; download the checkpoint and pass its directory")
    state: dict[str, Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    entry = VLAS.get(name)
    return load_converted(policy.model, entry.convert(state), entry.new_prefixes)


@dataclass
class LoraSettings:
    """LoRA on the language model(s) of a VLA.

    Attributes:
        enabled: wrap with peft LoRA; ``False`` fine-tunes every parameter.
        r: LoRA rank (OpenVLA's recipe: 32).
        alpha: LoRA alpha (OpenVLA: ``min(r, 16)``).
        dropout: LoRA dropout (OpenVLA: 0.0).
        extra_modules_to_save: more modules (dotted names in ``policy.model``) to train in full,
            e.g. ``[language_model.lm_head]`` for a random-init OpenVLA smoke run, whose frozen
            random output layer otherwise bounds the logits near uniform.
    """

    enabled: bool = True
    r: int = 32
    alpha: int = 16
    dropout: float = 0.0
    extra_modules_to_save: list[str] = field(default_factory=list)


def apply_lora(policy: VLAPolicy, settings: LoraSettings) -> None:
    """Wrap ``policy.model`` in place with peft LoRA.

    Targets: ``policy.lora_target_regex`` (the LLM linear layers). ``modules_to_save``:
    ``policy.new_modules()``, i.e. the swapped encoder (unless frozen) and projector stay fully
    trainable; everything else is frozen. OpenVLA's recipe puts LoRA on "all-linear" layers, the
    vision tower and projector included; here those are new modules and train in full instead.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=policy.lora_target_regex,
        modules_to_save=policy.new_modules() + list(settings.extra_modules_to_save),
        init_lora_weights="gaussian",  # as OpenVLA's finetune.py
    )
    names = {n for n, _ in policy.model.named_modules()}
    unknown = [m for m in settings.extra_modules_to_save if m not in names]
    if unknown:
        raise ValueError(f"lora.extra_modules_to_save names no module of {type(policy.model).__name__}: {unknown}")
    policy.model = get_peft_model(policy.model, config)


def save_finetuned(policy: VLAPolicy, name: str, directory: str | Path, extra: dict | None = None) -> Path:
    """Merge LoRA (if any) and write ``policy.json``, ``model.safetensors``, ``tokenizer/``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = policy.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
        policy.model = model
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"))
    policy.tokenizer.save_pretrained(str(directory / "tokenizer"))
    meta = {
        "format_version": FORMAT_VERSION,
        "vla": name,
        "config": dataclasses.asdict(policy.cfg),
        "normalizers": {k: n.to_dict() for k, n in policy.normalizers().items()},
        **(extra or {}),
    }
    (directory / "policy.json").write_text(json.dumps(meta, indent=2))
    return directory


def load_finetuned(directory: str | Path, device: str | torch.device = "cpu") -> VLAPolicy:
    """Rebuild a policy saved by :func:`save_finetuned` and load its weights strictly.

    The backbone is rebuilt from its saved encoder config, ``source`` included (a registry entry's
    architecture can come from its source, e.g. ``encoder.json`` of our checkpoints), so that source
    must be reachable; every weight is then replaced by ``model.safetensors``.
    """
    directory = Path(directory)
    meta_path = directory / "policy.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found; is {directory} a directory written by save_finetuned?")
    meta = json.loads(meta_path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{meta_path}: format_version {meta.get('format_version')}, this code reads {FORMAT_VERSION}. "
            "Version 1 named its backbone by backbone.source/model (before the encoder registry); "
            "fine-tune again to get a loadable checkpoint."
        )
    cfg = make_config(meta["vla"], dict(meta["config"]))
    tokenizer = load_tokenizer(str(directory / "tokenizer"))
    norms = {k: Normalizer.from_dict(d) for k, d in meta["normalizers"].items()}
    policy = build_policy(meta["vla"], cfg, tokenizer, norms)
    policy.model.load_state_dict(load_file(str(directory / "model.safetensors")), strict=True)
    return policy.to(device).eval()


__all__ = [
    "VLAS",
    "VLAEntry",
    "LoraSettings",
    "apply_lora",
    "build_policy",
    "load_finetuned",
    "load_released",
    "make_config",
    "save_finetuned",
]
