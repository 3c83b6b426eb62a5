"""Exceptions raised by the codec.

Every failure to read or write protocol bytes surfaces as a ProtocolError
subclass, so the server can catch one type, answer or close the connection,
and log one line; nothing from struct, codecs or the compression libraries
leaks out of protocol/.
"""

import contextlib
import struct


class ProtocolError(Exception):
    """Base of every error the codec raises."""


class DecodeError(ProtocolError):
    """Bytes that do not form a valid message (truncated, bad lengths, bad UTF-8)."""


class EncodeError(ProtocolError):
    """A message that cannot be written in the requested version."""


@contextlib.contextmanager
def decoding(what: str):
    """Whatever reading a truncated or garbled record raises becomes DecodeError."""
    try:
        yield
    except (struct.error, UnicodeDecodeError, IndexError) as exc:
        raise DecodeError(f"malformed {what}: {exc}") from None


class UnsupportedVersionError(ProtocolError):
    """An API key or version the codec has no schema for."""


class FrameTooLargeError(ProtocolError):
    """A frame whose declared size exceeds the configured maximum."""

    def __init__(self, size: int, limit: int):
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class CorruptRecordError(ProtocolError):
    """A record batch whose lengths or CRC do not hold."""


class CompressionError(ProtocolError):
    """Compressed record data that cannot be compressed or decompressed."""


class KafkaError(Exception):
    """A refusal with a Kafka error code and the message that goes with it.

    The one error type of the broker's services and handlers: whoever
    refuses raises it, and the handler puts ``code`` (and ``message``, where
    the response version has a field for it) in its answer. Not a
    ProtocolError: the bytes were fine, the request was refused.
    """

    def __init__(self, code, message: str | None = None):
        super().__init__(message or getattr(code, "name", str(code)))
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"KafkaError({getattr(self.code, 'name', self.code)}, {self.message!r})"
