"""What the Python scenario programs share: the command line and the verdict line.

Each program maps scenario names to functions ``fn(args) -> detail``. A
function signals n/a by raising ``NotApplicable(reason)`` and failure by
raising anything else; the program prints one JSON line and exits 0 either way.
``--security FILE`` (Kafka client properties, see compat/security.py) is
read into ``args.security``, a dict, empty without it.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import traceback
from pathlib import Path

VALUE_1MIB = bytes(range(256)) * 4096  # exactly 1 MiB


class NotApplicable(Exception):
    pass


# The transactions scenario: (values, commit?) per transaction, and what
# a read_committed consumer must see.
TRANSACTIONS = [([b"t1a", b"t1b"], True), ([b"t2"], False), ([b"t3"], True)]
COMMITTED = [b"t1a", b"t1b", b"t3"]


def check(condition, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def roundtrip_messages():
    """(key, value, headers) triples: keys, a null key, a null value, headers."""
    return [
        (b"k1", b"v1", [("h1", b"a"), ("h2", b"b")]),
        (b"k2", None, []),
        (None, b"v3", [("only", b"c")]),
    ]


def numbered(n: int, prefix: str = "m") -> list[bytes]:
    return [f"{prefix}{i}".encode() * 20 for i in range(n)]


def wait_until(fn, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def read_properties(path: str | None) -> dict[str, str]:
    """A Java properties file of ``key=value`` lines (no continuations)."""
    props = {}
    for line in Path(path).read_text().splitlines() if path else []:
        line = line.strip()
        if line and not line.startswith(("#", "!")):
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip()
    return props


def unsecured_jwt(subject: str, life_s: int = 3600) -> str:
    """An unsigned JWS (RFC 7515 appendix A.5) with the claims Kafka's
    unsecured validator reads: sub, iat, exp."""

    def part(claims: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()

    now = int(time.time())
    return f"{part({'alg': 'none'})}.{part({'sub': subject, 'iat': now, 'exp': now + life_s})}."


def main(scenarios: dict, version: str) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--scenario", required=True, help="a scenario name, or 'version' or 'list'")
    parser.add_argument("--topic", default="compat")
    parser.add_argument("--security", help="a file of Kafka client properties: security.protocol, sasl.*, ssl.*")
    args = parser.parse_args()
    args.security = read_properties(args.security)
    if args.scenario == "version":
        verdict = {"result": "pass", "detail": version}
    elif args.scenario == "list":
        verdict = {"result": "pass", "detail": " ".join(scenarios)}
    elif args.scenario not in scenarios:
        verdict = {"result": "n/a", "detail": "scenario not implemented for this client"}
    else:
        try:
            verdict = {"result": "pass", "detail": scenarios[args.scenario](args) or ""}
        except NotApplicable as e:
            verdict = {"result": "n/a", "detail": str(e)}
        except BaseException as e:  # noqa: BLE001 - the verdict carries every failure
            traceback.print_exc(file=sys.stderr)
            verdict = {"result": "fail", "detail": f"{type(e).__name__}: {e}".strip()}
    sys.stderr.flush()
    print(json.dumps(verdict), flush=True)
