"""A string that never shows itself: API keys live in one of these from the moment they are read."""

from __future__ import annotations

import hmac

__all__ = ["Secret"]


class Secret:
    """Holds an API key; ``repr``, ``str`` and f-strings show ``***``, only :meth:`reveal` gives the value.

    Keeping the key in this wrapper (rather than a ``str`` attribute) means no traceback, log line,
    ``repr`` of a transport or pydantic dump can leak it by accident.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The key itself; call it only where the key goes onto the wire."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return hmac.compare_digest(self._value.encode(), other._value.encode())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled; pass the key through the environment instead")
