"""The broker's log output: Python logging, as text for a person or as
JSON lines for a log shipper (``--log-format json``)."""

from __future__ import annotations

import datetime
import json
import logging
import sys

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (ISO 8601, UTC), level, logger,
    message, and the traceback as ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)

    def formatTime(self, record, datefmt=None) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def configure_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def recovery_summary(logs) -> str:
    """What opening the logs found, for the start-up banner: a
    ``storage.manager.LogManager`` just opened."""
    opened = logs.logs.values()
    scanned = sum(log.scanned_segments for log in opened)
    cut = [log for log in opened if log.recovered_bytes]
    if not opened:
        text = "no partitions yet"
    elif not logs.unclean_dirs:
        text = f"{len(opened)} partitions opened after a clean shutdown"
    else:
        text = (
            f"{len(opened)} partitions opened after an unclean shutdown of "
            + ", ".join(str(d) for d in logs.unclean_dirs)
            + f": {scanned} segments scanned"
        )
    if cut:
        text += f", {sum(log.recovered_bytes for log in cut)} bytes of torn writes cut in {len(cut)} partitions"
    return text
