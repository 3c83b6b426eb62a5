"""Exceptions raised by the codec.

Every failure to read or write protocol bytes surfaces as a ProtocolError
subclass, so the server can catch one type, answer or close the connection,
and log one line; nothing from struct, codecs or the compression libraries
leaks out of protocol/.
"""


class ProtocolError(Exception):
    """Base of every error the codec raises."""


class DecodeError(ProtocolError):
    """Bytes that do not form a valid message (truncated, bad lengths, bad UTF-8)."""


class EncodeError(ProtocolError):
    """A message that cannot be written in the requested version."""


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
