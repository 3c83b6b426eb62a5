"""Typed config keys with Kafka's ConfigDef rules for parsing and validating.

A key has a type, a default, an optional validator and a one-line doc.
Parsing a text value goes as Kafka's ``ConfigDef.parseType`` does it: the
text is trimmed; INT, SHORT and LONG must be a plain decimal integer within
the type's range, DOUBLE a decimal number, BOOLEAN ``true`` or ``false`` in
any case, LIST is split at commas (the empty text is the empty list, empty
items between commas are kept so that a validator sees them). A validator
then checks the parsed value. Both fail with ``ConfigValueError`` whose
message is Kafka's ``ConfigException`` text, ``Invalid value V for
configuration K: <rule>``, which is what an admin client is shown with
INVALID_CONFIG and what the broker prints when a property is wrong at start.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

INT_RANGE = (-(2**31), 2**31 - 1)
SHORT_RANGE = (-(2**15), 2**15 - 1)
LONG_RANGE = (-(2**63), 2**63 - 1)
LONG_MAX = LONG_RANGE[1]

_INTEGER = re.compile(r"[+-]?[0-9]+")
# Java's Double.parseDouble less NaN, Infinity and hex forms: a NaN ratio
# would pass Kafka's range check and then never compare true.
_DOUBLE = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?[fFdD]?")
_COMMA = re.compile(r"\s*,\s*")


class ConfigValueError(ValueError):
    """A value that does not parse or breaks its key's rule."""

    def __init__(self, name: str, value: object, rule: str | None):
        shown = format_value(value)
        super().__init__(f"Invalid value {shown} for configuration {name}" + (f": {rule}" if rule else ""))
        self.name = name


class ConfigTypeError(ValueError):
    """A parse failure with its own wording (not 'Not a number')."""


def format_value(value: object) -> str:
    """A value as Kafka prints it in messages and DescribeConfigs."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(value)
    return str(value)


def _integer(text: str, bounds: tuple[int, int]) -> int:
    if not _INTEGER.fullmatch(text):
        raise ValueError(text)
    number = int(text)
    if not bounds[0] <= number <= bounds[1]:
        raise ValueError(text)
    return number


def _boolean(text: str) -> bool:
    low = text.lower()
    if low not in ("true", "false"):
        raise ConfigTypeError("Expected value to be either true or false")
    return low == "true"


def _double(text: str) -> float:
    if not _DOUBLE.fullmatch(text):
        raise ValueError(text)
    return float(text.rstrip("fFdD"))


_PARSERS: dict[str, Callable[[str], object]] = {
    "INT": lambda t: _integer(t, INT_RANGE),
    "SHORT": lambda t: _integer(t, SHORT_RANGE),
    "LONG": lambda t: _integer(t, LONG_RANGE),
    "DOUBLE": _double,
    "BOOLEAN": _boolean,
    "STRING": lambda t: t,
    "CLASS": lambda t: t,
    "PASSWORD": lambda t: t,
    "LIST": lambda t: _COMMA.split(t) if t else [],
}


# -- validators: check(name, value) raises ConfigValueError ----------------------


@dataclass(frozen=True)
class Range:
    """Kafka's Range.atLeast / Range.between."""

    low: int | float | None = None
    high: int | float | None = None

    def check(self, name: str, value) -> None:
        if self.low is not None and value < self.low:
            raise ConfigValueError(name, value, f"Value must be at least {self.low}")
        if self.high is not None and value > self.high:
            raise ConfigValueError(name, value, f"Value must be no more than {self.high}")

    def __str__(self) -> str:
        low = "..." if self.low is None else self.low
        return f"[{low},...]" if self.high is None else f"[{low},...,{self.high}]"


def at_least(low) -> Range:
    return Range(low)


def between(low, high) -> Range:
    return Range(low, high)


@dataclass(frozen=True)
class OneOf:
    """Kafka's ValidString.in: an exact, case-sensitive match."""

    allowed: tuple[str, ...]

    def check(self, name: str, value) -> None:
        if value not in self.allowed:
            raise ConfigValueError(name, value, "String must be one of: " + ", ".join(self.allowed))

    def __str__(self) -> str:
        return "[" + ", ".join(self.allowed) + "]"


@dataclass(frozen=True)
class EachOneOf(OneOf):
    """Kafka's ValidList.in: every item passes OneOf (the complaint names the
    first bad item); the empty list passes."""

    def check(self, name: str, value) -> None:
        for item in value:
            super().check(name, item)


@dataclass(frozen=True)
class Rule:
    """Any other check: ``test(value)`` true when valid, else ``complaint``."""

    test: Callable[[object], bool]
    complaint: str
    shown: str

    def check(self, name: str, value) -> None:
        if not self.test(value):
            raise ConfigValueError(name, value, self.complaint)

    def __str__(self) -> str:
        return self.shown


@dataclass(frozen=True)
class ConfigKey:
    """One config: its type (Kafka's ConfigDef.Type name), default (the
    parsed value, None for "no default"), validator and doc."""

    name: str
    type: str
    default: object
    validator: Range | OneOf | Rule | None = None
    doc: str = ""

    def parse(self, raw: str) -> object:
        """``raw`` parsed and validated; ConfigValueError otherwise."""
        text = str(raw).strip()
        try:
            value = _PARSERS[self.type](text)
        except ConfigTypeError as exc:
            raise ConfigValueError(self.name, raw, str(exc)) from None
        except ValueError:
            raise ConfigValueError(self.name, raw, f"Not a number of type {self.type}") from None
        self.validate(value)
        return value

    def validate(self, value) -> None:
        if self.validator is not None and value is not None:
            self.validator.check(self.name, value)

    def text(self, value) -> str | None:
        """``value`` written back as Kafka prints it (None stays None)."""
        return None if value is None else format_value(value)
