"""A broker per module and two ways to run the CLI: as a child process
(``cli``), exactly as a user does, and in-process through ``main(argv)``
(``run``), which is quicker and lets a test read stdout and stderr apart."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import dataclass

import pytest

from pybroker.admin.main import main
from pybroker.testing import running_broker

DEV = {"group.initial.rebalance.delay.ms": "0", "offsets.topic.num.partitions": "1", "num.partitions": "1"}


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


@pytest.fixture(scope="module")
def broker():
    with running_broker(DEV) as b:
        yield b


def cli(*args: str, input: str | None = None, timeout: float = 60) -> Result:
    proc = subprocess.run([sys.executable, "-m", "pybroker", *args], check=False, input=input, capture_output=True, text=True,
                          timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def run(capsys):
    def run(*args: str) -> Result:
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
