"""Strict loading of converted foreign checkpoints.

A converter (``convert_<source>(state_dict) -> state_dict``) renames the foreign keys to ours and
drops, by explicit name or prefix, the foreign weights that the swap replaces. The modules the
swap *adds* (our encoder, its projector, optional heads) have no foreign counterpart: their keys
are listed by prefix, taken from the model's own initialisation, and everything is then loaded
with ``load_state_dict(strict=True)``. A key the converter forgot, a stray foreign key or a shape
mismatch is therefore an error, never a warning.
"""

from __future__ import annotations

from torch import Tensor, nn


def drop_prefixed(state_dict: dict[str, Tensor], prefixes: tuple[str, ...]) -> dict[str, Tensor]:
    """Remove every key starting with one of ``prefixes``; raises if a prefix matches nothing.

    A prefix that matches nothing means the checkpoint is not in the layout the converter was
    written for, so it is reported rather than ignored.
    """
    for p in prefixes:
        if not any(k.startswith(p) for k in state_dict):
            raise KeyError(f"expected checkpoint keys under {p!r}, found none; is this the right checkpoint format?")
    return {k: v for k, v in state_dict.items() if not k.startswith(prefixes)}


def load_converted(model: nn.Module, state_dict: dict[str, Tensor], new_prefixes: tuple[str, ...]) -> list[str]:
    """Load a converted state dict strictly; keys under ``new_prefixes`` keep the model's own values.

    Args:
        model: the target module.
        state_dict: output of a ``convert_*`` function (our key names).
        new_prefixes: key prefixes of the modules the swap adds (e.g. ``("vision.",)``).

    Returns:
        The sorted list of keys that kept their fresh initialisation.

    Raises:
        KeyError: if the converted state dict itself holds keys under ``new_prefixes``.
        RuntimeError: from ``load_state_dict(strict=True)`` on any missing/unexpected key or shape.
    """
    clash = sorted(k for k in state_dict if k.startswith(new_prefixes))
    if clash:
        raise KeyError(f"converted checkpoint holds keys of the new modules {new_prefixes}: {clash[:5]} ...")
    own = {k: v for k, v in model.state_dict().items() if k.startswith(new_prefixes)}
    model.load_state_dict({**state_dict, **own}, strict=True)
    return sorted(own)
