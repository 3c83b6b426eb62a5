"""Java's properties file format, as ``java.util.Properties.load`` reads
it, so that a Kafka ``server.properties`` means here what it means to
Kafka.

- A logical line may span several natural lines: a line ending in an odd
  number of backslashes continues on the next one, whose leading
  whitespace is dropped. Comment lines (``#`` or ``!`` first) and blank
  lines are skipped, and a comment never continues.
- The key runs to the first unescaped ``=``, ``:`` or whitespace; then
  whitespace, at most one ``=`` or ``:``, and whitespace again are skipped;
  the rest of the line is the value (a key alone has the empty value).
- Escapes, in keys and values: ``\\t \\n \\r \\f``, ``\\uXXXX``, and a
  backslash before any other character stands for that character.
- A key given twice: the last one wins.

Java reads a byte stream as ISO-8859-1; a Python user writes UTF-8. The
file is decoded as UTF-8, and as ISO-8859-1 (Java's reading) when it is
not valid UTF-8.
"""

from __future__ import annotations

import re

WHITESPACE = " \t\f"
_TRAILING_BACKSLASHES = re.compile(r"\\+$")
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
_LINE_END = re.compile(r"\r\n|\r|\n")  # Java's, not str.splitlines' many more


class PropertiesError(ValueError):
    """A line Java's reader refuses (a malformed ``\\uXXXX``)."""


def decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def parse(text: str) -> list[tuple[int, str, str]]:
    """``(line number, key, value)`` of every entry, in file order (the
    line number is where the entry starts)."""
    entries = []
    for number, line in _logical_lines(text):
        key, value = _split(line)
        try:
            entries.append((number, _unescape(key), _unescape(value)))
        except PropertiesError as exc:
            raise PropertiesError(f"line {number}: {exc}") from None
    return entries


def loads(text: str) -> dict[str, str]:
    return {key: value for _, key, value in parse(text)}


def _logical_lines(text: str):
    natural = _LINE_END.split(text)
    i = 0
    while i < len(natural):
        start = i
        line = natural[i].lstrip(WHITESPACE)
        i += 1
        if not line or line[0] in "#!":
            continue
        parts = []
        while _continues(line) and i < len(natural):
            parts.append(line[:-1])
            line = natural[i].lstrip(WHITESPACE)
            i += 1
        if _continues(line):  # the file ends in a continuation: Java drops the backslash
            line = line[:-1]
        parts.append(line)
        yield start + 1, "".join(parts)


def _continues(line: str) -> bool:
    match = _TRAILING_BACKSLASHES.search(line)
    return match is not None and len(match.group()) % 2 == 1


def _split(line: str) -> tuple[str, str]:
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c == "\\":
            i += 2
            continue
        if c in "=:" or c in WHITESPACE:
            break
        i += 1
    key = line[: min(i, n)]
    j = i
    while j < n and line[j] in WHITESPACE:
        j += 1
    if j < n and line[j] in "=:":
        j += 1
        while j < n and line[j] in WHITESPACE:
            j += 1
    return key, line[j:]


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        i += 1
        if c != "\\" or i == n:
            out.append(c)
            continue
        c = text[i]
        i += 1
        if c == "u":
            digits = text[i : i + 4]
            if len(digits) < 4 or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise PropertiesError("Malformed \\uxxxx encoding.")
            out.append(chr(int(digits, 16)))
            i += 4
        else:
            out.append(_ESCAPES.get(c, c))
    # \uXXXX escapes are Java chars: a surrogate pair is one character.
    return "".join(out).encode("utf-16", "surrogatepass").decode("utf-16", "replace")
