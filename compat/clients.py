"""The columns of the matrix: each client, its folder, how to run and install it.

Every client folder holds a scenario program with one command line
(``--bootstrap HOST:PORT --scenario NAME --topic T``) that prints one JSON
line ``{"result": "pass"|"fail"|"n/a", "detail": "..."}``. ``--scenario
version`` prints the client's version as the detail.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Client:
    name: str
    folder: str
    command: tuple[str, ...]  # run from the repository root
    setup: str  # "pip", "npm", "go" or "apt"

    @property
    def path(self) -> Path:
        return HERE / self.folder


def _py(module: str) -> tuple[str, ...]:
    return (sys.executable, "-m", f"compat.{module}.scenarios")


CLIENTS = [
    Client("kafka-python", "kafka_python", _py("kafka_python"), "pip"),
    Client("confluent-kafka", "confluent_kafka", _py("confluent_kafka"), "pip"),
    Client("aiokafka", "aiokafka", _py("aiokafka"), "pip"),
    Client("kcat", "kcat", ("bash", "compat/kcat/scenarios.sh"), "apt"),
    Client("kafkajs", "kafkajs", ("node", "compat/kafkajs/scenarios.js"), "npm"),
    Client("@platformatic/kafka", "platformatic", ("node", "compat/platformatic/scenarios.mjs"), "npm"),
    Client("sarama", "sarama", ("compat/sarama/scenarios",), "go"),
    Client("kafka-go", "kafka_go", ("compat/kafka_go/scenarios",), "go"),
]


def install(client: Client) -> str | None:
    """Install what the client needs if it is missing; the reason it cannot be, or None."""
    try:
        if client.setup == "pip":
            wanted = (client.path / "requirements.txt").read_text().split()
            if not _pip_satisfied(wanted):
                _run([sys.executable, "-m", "pip", "install", "-q", *wanted])
        elif client.setup == "npm":
            if shutil.which("npm") is None:
                return "npm is not installed"
            if not (client.path / "node_modules" / ".package-lock.json").exists():
                _run(["npm", "ci", "--no-audit", "--no-fund"], cwd=client.path)
        elif client.setup == "apt":
            if shutil.which(client.name) is None:
                _run(["apt-get", "install", "-y", "-q", client.name])
        elif client.setup == "go":
            build = client.path / "build.sh"
            if not build.exists():
                return "no scenario program yet (build.sh missing)"
            _run(["bash", str(build)], cwd=client.path)
    except (OSError, subprocess.CalledProcessError) as e:
        output = getattr(e, "output", "") or ""
        last = output.strip().splitlines()[-1:] or [str(e)]
        return f"setup failed: {last[0]}"
    return None


def _pip_satisfied(requirements: list[str]) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    for req in requirements:
        name, _, pinned = req.partition("==")
        try:
            if version(name) != pinned:
                return False
        except PackageNotFoundError:
            return False
    return True


def _run(args, cwd=None) -> None:
    subprocess.run(args, cwd=cwd, check=True, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
