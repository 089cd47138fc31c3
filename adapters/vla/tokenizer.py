"""Tokenizers for the VLA adapters: a real one from a local directory, or a tiny offline one.

The released models use PaliGemma's SentencePiece tokenizer (Pi0) and Llama-2's (OpenVLA). Both
are gated downloads, so nothing here fetches them: ``tokenizer=<dir>`` loads a local copy with
``local_files_only=True``; ``tokenizer=tiny`` builds a whitespace WordLevel tokenizer from the
instructions in the training demos, padded with filler tokens to ``vocab_size`` so that OpenVLA's
action ids (the last 256 ids) land on fillers, never on words. It is for tests and smoke runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+|[^\w\s]", text.lower())


def build_tiny_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A WordLevel tokenizer over the words of ``texts`` (lower-cased, punctuation split off).

    Ids: ``<pad>`` 0, ``<s>`` 1 (prepended as BOS), ``</s>`` 2, ``<unk>`` 3, then the words in sorted
    order, then ``<extra_i>`` fillers up to ``vocab_size``.

    Args:
        texts: strings whose words form the vocabulary (prompts, instructions).
        vocab_size: total base-vocabulary size; must leave room for the words.
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors

    words = sorted({w for t in texts for w in _words(t)})
    if len(SPECIAL_TOKENS) + len(words) > vocab_size:
        raise ValueError(
            f"{len(words)} distinct words do not fit in vocab_size={vocab_size}; raise tokenizer_vocab_size."
        )
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for w in words:
        vocab[w] = len(vocab)
    while len(vocab) < vocab_size:
        vocab[f"<extra_{len(vocab)}>"] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r"[\w']+|[^\w\s]"), behavior="isolated"), pre_tokenizers.WhitespaceSplit()]
    )
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def load_tokenizer(spec: str, texts: Iterable[str] = (), vocab_size: int = 512) -> PreTrainedTokenizerBase:
    """``tiny`` -> :func:`build_tiny_tokenizer` over ``texts``; otherwise a local tokenizer directory."""
    if spec == "tiny":
        return build_tiny_tokenizer(texts, vocab_size)
    path = Path(spec)
    if not path.is_dir():
        raise FileNotFoundError(
            f"tokenizer {spec!r} is neither 'tiny' nor a local directory. Download it once on a machine "
            "with internet (e.g. `huggingface-cli download google/paligemma-3b-pt-224 --include 'tokenizer*'`) "
            "and pass the directory."
        )
    return AutoTokenizer.from_pretrained(path, local_files_only=True)
