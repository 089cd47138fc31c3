"""A small name -> builder registry used for VLA families and vision backbones.

A duplicate name raises; an unknown name raises with the list of known names (STYLE.md,
"One registry per family").
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

T = TypeVar("T", bound=Callable)


class Registry(Generic[T]):
    """Maps names to builder callables.

    Args:
        kind: what the registry holds, used in error messages ("VLA", "vision backbone").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REG.register("name")`` adds the decorated builder under ``name``."""

        def deco(fn: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered; pick another name.")
            self._entries[name] = fn
            return fn

        return deco

    def get(self, name: str) -> T:
        """Return the builder registered as ``name``; raises KeyError listing the known names."""
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {sorted(self._entries)}")
        return self._entries[name]

    def names(self) -> list[str]:
        """Sorted list of registered names."""
        return sorted(self._entries)
