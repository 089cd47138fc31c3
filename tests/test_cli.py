"""avbr.cli (user errors -> one message, exit 2; display switches) and avbr.progress (bars, summary)."""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass

import pytest
import torch
from omegaconf import OmegaConf

from avbr import progress
from avbr.adapters.base import StrictLoadError, load_strict
from avbr.cli import ConfigError, entry_point, format_user_error, is_user_error
from avbr.registry import Registry, UnknownNameError


@dataclass
class _Schema:
    lo: int = 0
    hi: int = 1

    def __post_init__(self) -> None:
        if self.lo >= self.hi:
            raise ValueError(f"lo ({self.lo}) must be < hi ({self.hi})")


def _raise(ex: BaseException) -> None:
    raise ex


def test_which_errors_are_the_users() -> None:
    with pytest.raises(UnknownNameError) as unknown:
        Registry("encoder").get("nope")
    assert is_user_error(unknown.value) and isinstance(unknown.value, KeyError)
    assert is_user_error(FileNotFoundError("x")) and is_user_error(ConfigError("x"))
    with pytest.raises(Exception) as post_init:  # a cross-field check, raised through OmegaConf
        OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(_Schema), {"lo": 2}))
    assert is_user_error(post_init.value)
    with pytest.raises(ValueError) as bug:  # the same exception type from ordinary code is a bug
        _raise(ValueError("lo"))
    assert not is_user_error(bug.value)
    assert not is_user_error(ZeroDivisionError())


def test_message_names_kind_text_and_place() -> None:
    with pytest.raises(UnknownNameError) as ex:
        Registry("encoder").get("nope")
    text = format_user_error(ex.value)
    assert text.startswith("error (UnknownNameError): unknown encoder 'nope'; valid names:")  # no KeyError quotes
    assert "raised at: avbr/registry.py:" in text and "verbose=true" in text


def test_strict_load_summary() -> None:
    module = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(4)])  # 8 keys
    with pytest.raises(StrictLoadError) as ex:
        load_strict(module, {"other.weight": torch.zeros(1), "0.weight": torch.zeros(3, 3)}, source="w.pt")
    text = str(ex.value)
    assert "7 missing, 1 unexpected, 1 shape mismatches" in text
    assert "missing keys (7), first 5: 0.bias, 1.bias, 1.weight, 2.bias, 2.weight;" in text
    assert "0.weight: checkpoint (3, 3) vs model (2, 2)" in text


def test_entry_point_exit_status_and_switches(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    seen: list[list[str]] = []

    def main() -> None:
        seen.append(list(sys.argv[1:]))
        raise ConfigError("tasks=[99] is not a task id")

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.delenv("AVBR_PROGRESS", raising=False)
    monkeypatch.setattr(sys, "argv", ["prog", "a=1", "progress=false", "b=2"])
    with pytest.raises(SystemExit) as code:
        entry_point(main)()
    assert code.value.code == 2 and seen[-1] == ["a=1", "b=2"] and os.environ["AVBR_PROGRESS"] == "0"
    assert "error (ConfigError): tasks=[99]" in capsys.readouterr().err
    for switch in ("--verbose", "verbose=true"):
        monkeypatch.setattr(sys, "argv", ["prog", switch])
        with pytest.raises(ConfigError):  # the traceback is Python's own
            entry_point(main)()
        assert seen[-1] == []
    monkeypatch.setattr(sys, "argv", ["prog"])
    with pytest.raises(ZeroDivisionError):  # not a user error: never hidden
        entry_point(lambda: 1 / 0)()


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(("tty", "env", "shown"), [(True, None, True), (False, None, False), (True, "0", False)])
def test_progress_only_on_a_terminal(tty: bool, env: str | None, shown: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = _Stream(tty), _Stream(tty)
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    if env is None:
        monkeypatch.delenv("AVBR_PROGRESS", raising=False)
    else:
        monkeypatch.setenv("AVBR_PROGRESS", env)
    bar = progress.progress_bar(total=4, desc="rollouts", unit="ep")
    for _ in range(4):
        bar.update(1)
    line = progress.finish(bar, "4 episodes, 3 successes (75%)")
    assert ("4/4" in err.getvalue() and "ep/s" in err.getvalue()) == shown  # tqdm's count and rate
    assert line.startswith("[rollouts] 4 episodes, 3 successes (75%) in 00:0")
    assert out.getvalue() == line + "\n"  # the summary is printed with or without a terminal
