"""OpenVLA's discrete action tokenizer, re-implemented from its documented behaviour.

Facts (source: openvla/openvla ``prismatic/vla/action_tokenizer.py`` and
``prismatic/extern/hf/modeling_prismatic.py``, read, not copied):

* ``n_bins = 256`` *edges* ``linspace(-1, 1, 256)``; the 255 bin centres are the midpoints of
  consecutive edges.
* encode: clip to ``[-1, 1]``, ``d = digitize(a, edges)`` (numpy convention, ``d`` in ``1..256``),
  token id ``= vocab_size - d``: the ids are counted back from the end of the *tokenizer's* base
  vocabulary (Llama-2: ``vocab_size = 32000``, so ids ``31744..31999``; the model's embedding
  matrix is padded to 32064 but the pad rows are never action tokens).
* decode: ``d = clip(vocab_size - id - 1, 0, 254)``, action ``= centres[d]``. The last index 255
  (``a == 1`` exactly) folds into the last centre.

Round trip: ``|decode(encode(a)) - a| <= bin width = 2 / 255`` for ``a`` in ``[-1, 1]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


class ActionTokenizer:
    """Maps continuous actions in ``[-1, 1]`` to the last ``n_bins`` ids of a vocabulary and back.

    Args:
        vocab_size: size of the tokenizer's base vocabulary (``tokenizer.vocab_size``; added
            special tokens excluded), from whose end the action ids are counted.
        n_bins: number of bin edges (OpenVLA: 256).
        min_action: lower clip bound (OpenVLA: -1).
        max_action: upper clip bound (OpenVLA: 1).
    """

    def __init__(self, vocab_size: int, n_bins: int = 256, min_action: float = -1.0, max_action: float = 1.0) -> None:
        if vocab_size <= n_bins:
            raise ValueError(
                f"vocab_size {vocab_size} must exceed n_bins {n_bins}: action ids overwrite the last "
                f"{n_bins} tokens of the vocabulary; use a larger tokenizer."
            )
        self.vocab_size = vocab_size
        self.n_bins = n_bins
        self.min_action = min_action
        self.max_action = max_action
        self.edges = torch.linspace(min_action, max_action, n_bins, dtype=torch.float64)  # [n_bins]
        self.centers = (self.edges[:-1] + self.edges[1:]) / 2.0  # [n_bins - 1]

    @property
    def bin_width(self) -> float:
        """Width of one bin interval."""
        return (self.max_action - self.min_action) / (self.n_bins - 1)

    @property
    def first_id(self) -> int:
        """Smallest token id an action can take (``vocab_size - n_bins``)."""
        return self.vocab_size - self.n_bins

    @property
    def last_id(self) -> int:
        """Largest token id an action can take (``vocab_size - 1``)."""
        return self.vocab_size - 1

    def encode(self, actions: Tensor) -> Tensor:
        """Actions ``[..., A]`` float -> token ids ``[..., A]`` long."""
        a = actions.detach().to(torch.float64).clamp(self.min_action, self.max_action)
        # numpy.digitize(x, edges) with increasing edges == searchsorted(edges, x, right=True)
        d = torch.searchsorted(self.edges.to(a.device), a.contiguous(), right=True)  # [..., A], 1..n_bins
        return (self.vocab_size - d).long()

    def decode(self, token_ids: Tensor) -> Tensor:
        """Token ids ``[..., A]`` -> actions ``[..., A]`` float32 (bin centres)."""
        d = (self.vocab_size - token_ids.long() - 1).clamp(0, self.centers.numel() - 1)
        return self.centers.to(token_ids.device)[d].float()

    def is_action_id(self, token_ids: Tensor) -> Tensor:
        """Boolean mask of ids inside the action range."""
        return (token_ids >= self.first_id) & (token_ids <= self.last_id)
