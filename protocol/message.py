"""Base class of every generated message and struct class.

The generated modules (``protocol/messages/``) give each class its
``__slots__``, a keyword-only ``__init__`` filling Kafka's defaults, and one
encoder and one decoder function per distinct wire layout; this base adds
what is the same for all of them: equality, repr, and the public
``encode``/``decode`` entry points that turn every low-level failure into a
``ProtocolError``.
"""

from __future__ import annotations

import struct

from .errors import DecodeError, EncodeError, UnsupportedVersionError
from .primitives import Writer


class _Default:
    """Marker for "use the schema default" where None is a legal value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT = _Default()

# Low-level failures that mean "these bytes or values do not fit the schema".
_DECODE_FAILURES = (struct.error, IndexError, UnicodeDecodeError, ValueError, OverflowError)
_ENCODE_FAILURES = (struct.error, TypeError, AttributeError, ValueError, OverflowError)


class Message:
    __slots__ = ()

    # Set by the generated subclasses.
    NAME: str = ""
    API_KEY: int | None = None
    VALID_VERSIONS: tuple[int, int] = (0, -1)
    FLEXIBLE_VERSIONS: tuple[int, int] | None = None
    _ENCODERS: tuple = ()
    _DECODERS: tuple = ()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __repr__(self) -> str:
        parts = ", ".join(f"{s}={getattr(self, s)!r}" for s in self.__slots__)
        return f"{type(self).__name__}({parts})"

    @classmethod
    def is_flexible(cls, version: int) -> bool:
        flex = cls.FLEXIBLE_VERSIONS
        return flex is not None and flex[0] <= version <= flex[1]

    @classmethod
    def _codec(cls, table: tuple, version: int):
        lo, hi = cls.VALID_VERSIONS
        if not lo <= version <= hi:
            raise UnsupportedVersionError(f"{cls.NAME} has no version {version} (valid {lo}-{hi})")
        return table[version]

    def write(self, w: Writer, version: int) -> None:
        encoder = self._codec(self._ENCODERS, version)
        try:
            encoder(w, self)
        except EncodeError:
            raise
        except _ENCODE_FAILURES as exc:
            raise EncodeError(f"cannot encode {self.NAME} v{version}: {exc}") from exc

    def encode(self, version: int) -> bytes:
        w = Writer()
        self.write(w, version)
        return w.getvalue()

    def encode_chunks(self, version: int) -> list:
        """The encoding as a list of buffers; large blobs are not copied."""
        w = Writer()
        self.write(w, version)
        return w.chunks()

    @classmethod
    def decode_from(cls, buf, pos: int, version: int):
        """Decode one message starting at ``pos``; returns (message, end position)."""
        decoder = cls._codec(cls._DECODERS, version)
        if not isinstance(buf, memoryview):
            buf = memoryview(buf)
        try:
            return decoder(buf, pos)
        except DecodeError:
            raise
        except _DECODE_FAILURES as exc:
            raise DecodeError(f"cannot decode {cls.NAME} v{version}: {exc}") from None

    @classmethod
    def decode(cls, data, version: int):
        """Decode a message that must fill ``data`` exactly."""
        msg, pos = cls.decode_from(data, 0, version)
        if pos != len(data):
            raise DecodeError(f"{cls.NAME} v{version}: {len(data) - pos} bytes left over")
        return msg


def absent_field(message: str, field: str, version: int) -> EncodeError:
    return EncodeError(f"{message} v{version} has no field {field}; it cannot carry a non-default value")
