"""EgoDex task text: the active description of reversible tasks (attribute layout of the EgoDex
release: ``llm_description``, ``llm_description2``, ``which_llm_description`` "1" | "2",
``llm_type``)."""

from __future__ import annotations

import numpy as np
import pytest
from pair_fixtures import write_egodex_episode

from avbr.data import CorruptFileError, EgoDexSource

REVERSIBLE = {"llm_type": "reversible", "llm_description": "Put the lid on the cup.", "llm_description2": "Take the lid off the cup."}


@pytest.mark.parametrize("attrs, expected", [
    ({**REVERSIBLE, "which_llm_description": "2"}, "Take the lid off the cup."),
    ({**REVERSIBLE, "which_llm_description": "1"}, "Put the lid on the cup."),
    ({**REVERSIBLE, "which_llm_description": np.bytes_(b"2")}, "Take the lid off the cup."),  # fixed-length string attr
    ({"llm_type": "reversible", "llm_description": b"Put the lid on.", "llm_description2": b"Take the lid off.",
      "which_llm_description": b"2"}, "Take the lid off."),
    ({"llm_type": "one-way", "llm_description": "Fold the towel."}, "Fold the towel."),
    ({}, "add_remove_lid"),  # no description: the task folder
])
def test_task_is_the_active_description(tmp_path, attrs: dict, expected: str) -> None:
    write_egodex_episode(tmp_path / "add_remove_lid", 0, n=4, attrs=attrs)
    src = EgoDexSource(str(tmp_path))
    ref = src.episodes()[0]
    assert src.task(ref) == expected
    assert src.read_pair(ref, 0, 1)["task"] == expected


def test_which_2_without_second_description_is_reported(tmp_path) -> None:
    write_egodex_episode(tmp_path / "add_remove_lid", 0, n=4, attrs={"llm_description": "Put the lid on.", "which_llm_description": "2"})
    src = EgoDexSource(str(tmp_path))
    with pytest.raises(CorruptFileError, match="llm_description2"):
        src.task(src.episodes()[0])
