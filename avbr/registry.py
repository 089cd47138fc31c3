"""A name -> builder registry shared by the model, encoder, environment and policy families.

A duplicate name raises; an unknown name raises with the list of known names, so that a typo in a
Hydra override (``encoder=two_stram``) says what the valid options are.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from avbr.cli import UserError

T = TypeVar("T")

__all__ = ["Registry", "UnknownNameError"]


class UnknownNameError(UserError, KeyError):
    """A name that is not in a registry; the message lists the valid names."""


class Registry(Generic[T]):
    """Maps names to objects (usually builder functions or classes).

    Args:
        kind: what the registry holds, used in error messages (``"model"``, ``"encoder"``...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that stores ``obj`` under ``name``; a second registration of a name raises."""

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise KeyError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """The entry for ``name``; raises :class:`UnknownNameError` (a ``KeyError``) listing the valid names if there is none."""
        if name not in self._entries:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; valid names: {', '.join(sorted(self._entries))}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
