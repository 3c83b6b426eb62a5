"""The layer rules of DESIGN.md and docs/ARCHITECTURE.md, checked on the
source (so a lazy import inside a function, or one under TYPE_CHECKING,
counts too).

The repository's ``protocol/`` and ``storage/`` folders are installed as
``pybroker.protocol`` and ``pybroker.storage``; every module is named here
by its installed name, and relative imports are resolved against it.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Where each installed package's source lives in the repository.
FOLDERS = {"pybroker.protocol": "protocol", "pybroker.storage": "storage", "pybroker": "pybroker"}

# (modules the rule covers, what they must not import, what is allowed anyway)
RULES = [
    ("pybroker.protocol", {"trio", "pybroker"}, {"pybroker.protocol"}),
    ("pybroker.storage", {"trio", "pybroker"}, {"pybroker.protocol", "pybroker.storage"}),
    # Storage uses the codec for record batches; which Kafka error a refusal
    # is answered with is decided above it (the replica layer).
    ("pybroker.storage", {"pybroker.protocol.error_codes"}, set()),
    # Handlers reach storage only through the services (the replica layer).
    ("pybroker.handlers", {"pybroker.storage"}, set()),
    # Nothing imports the repository folders by their bare names: installed,
    # they exist only inside the pybroker package.
    ("", {"protocol", "storage"}, set()),
    # The composition root builds the server, never the other way round:
    # a connection gets a ServerContext, not the broker.
    ("pybroker.server", {"pybroker.broker"}, set()),
    # Nor do the handlers and the services get the broker: they are given
    # what they use.
    ("pybroker.handlers", {"pybroker.broker"}, set()),
    ("pybroker.groups", {"pybroker.broker"}, set()),
    ("pybroker.txn", {"pybroker.broker", "pybroker.handlers", "pybroker.server"}, set()),
    # The transaction coordinator's rules and record formats are data: no I/O.
    *((f"pybroker.txn.{m}", {"trio"}, set()) for m in ("state", "records")),
    ("pybroker.replica", {"pybroker.broker", "pybroker.handlers", "pybroker.server"}, set()),
    ("pybroker.cluster", {"pybroker.broker", "pybroker.handlers", "pybroker.server"}, set()),
    # The cluster's pure logic (znode formats, leader choice, placement)
    # does no I/O: no Trio, no ZooKeeper client.
    *(
        (f"pybroker.cluster.{m}", {"trio", "kazoo", "pybroker.zk"}, set())
        for m in ("znodes", "jvm_json", "election", "placement", "controller_state")
    ),
    # SASL's mechanisms are rules and state: no I/O, nothing of the broker.
    ("pybroker.sasl", {"trio", "pybroker.broker", "pybroker.handlers", "pybroker.server", "pybroker.cluster"}, set()),
    # Quota arithmetic and precedence are data with the time given: no I/O,
    # nothing of the broker but the codec.
    (
        "pybroker.quotas",
        {"trio", "kazoo", "pybroker.zk", "pybroker.broker", "pybroker.handlers", "pybroker.server",
         "pybroker.cluster", "pybroker.storage", "pybroker.replica", "pybroker.groups", "pybroker.txn"},
        set(),
    ),
    # ACL rules and formats are data: no I/O, nothing of the broker but the codec.
    (
        "pybroker.acl",
        {"trio", "kazoo", "pybroker.zk", "pybroker.broker", "pybroker.handlers", "pybroker.server",
         "pybroker.cluster", "pybroker.storage", "pybroker.replica", "pybroker.groups", "pybroker.txn"},
        set(),
    ),
    # The admin CLI is a client: the codec and the consumer protocol only.
    (
        "pybroker.admin",
        {"trio", "pybroker.broker", "pybroker.handlers", "pybroker.server", "pybroker.storage",
         "pybroker.replica", "pybroker.cluster", "pybroker.txn"},
        set(),
    ),
    # The console is a client of the cluster too (through pybroker.admin),
    # served by the broker but given nothing of it.
    (
        "pybroker.console",
        {"pybroker.broker", "pybroker.handlers", "pybroker.server", "pybroker.storage", "pybroker.replica",
         "pybroker.cluster", "pybroker.txn", "pybroker.groups.coordinator"},
        set(),
    ),
    # The metrics read the services they are handed, at scrape time; the
    # request path's counters (stats) import nothing at all.
    ("pybroker.metrics", {"pybroker.broker", "pybroker.handlers", "pybroker.server", "pybroker.storage"}, set()),
    ("pybroker.metrics.stats", {"trio", "prometheus_client", "pybroker"}, set()),
    # The HTTP server that the console and the metrics share is HTTP alone:
    # nothing of the broker, so either can use it.
    ("pybroker.http_server", {"pybroker"}, set()),
    # ZooKeeper is reached through pybroker.zk, which bridges kazoo's threads
    # into Trio; kazoo called anywhere else could block the Trio thread.
    ("pybroker", {"kazoo"}, set()),
]

# Modules a rule does not cover: (rule's covered prefix, exempt prefix).
EXEMPT = {("pybroker", "pybroker.zk")}


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    folder = rel.parts[0]
    package = next((name for name, f in FOLDERS.items() if f == folder), folder)
    parts = [*package.split("."), *rel.parts[1:]]
    parts[-1] = parts[-1].removesuffix(".py")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path) -> set[str]:
    """Every module ``path`` imports, by absolute name."""
    name = module_name(path, root)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            # ``from . import x`` and ``from pybroker import storage`` import modules too.
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _within(module: str, prefix: str) -> bool:
    return not prefix or module == prefix or module.startswith(prefix + ".")


def violations(root: Path, folders=("protocol", "storage", "pybroker", "tests", "bench")) -> dict[str, list[str]]:
    """{module: [forbidden imports]} over the Python files under ``folders``."""
    found = {}
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            if "node_modules" in path.parts or path.is_symlink():
                continue
            name = module_name(path, root)
            bad = set()
            for covered, forbidden, allowed in RULES:
                if not _within(name, covered) or any(c == covered and _within(name, e) for c, e in EXEMPT):
                    continue
                for imported in imported_modules(path, root):
                    if any(_within(imported, f) for f in forbidden) and not any(_within(imported, a) for a in allowed):
                        bad.add(imported)
            if bad:
                found[name] = sorted(bad)
    return found


def test_layer_imports():
    assert (ROOT / "protocol").is_dir() and (ROOT / "storage").is_dir()
    found = violations(ROOT)
    assert found == {}


@pytest.mark.parametrize(
    "folder, source, expected",
    [
        ("storage", "import trio\n", "trio"),
        ("storage", "from pybroker.broker import Broker\n", "pybroker.broker"),
        ("storage", "def f():\n    from pybroker import server\n", "pybroker.server"),
        ("protocol", "from pybroker.storage.log import PartitionLog\n", "pybroker.storage.log"),
        ("protocol", "from ..storage import log\n", "pybroker.storage"),
        ("pybroker", "from protocol.errors import EncodeError\n", "protocol.errors"),
        (
            "pybroker/server.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .broker import Broker\n",
            "pybroker.broker",
        ),
        ("pybroker/server.py", "def f():\n    from pybroker import broker\n", "pybroker.broker"),
        ("pybroker/handlers", "from pybroker.storage.log import KafkaStorageError\n", "pybroker.storage.log"),
        ("pybroker/handlers", "from ..storage import log\n", "pybroker.storage"),
        (
            "pybroker/handlers",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..broker import Broker\n",
            "pybroker.broker",
        ),
        ("pybroker/groups", "from pybroker.broker import now_ms\n", "pybroker.broker"),
        ("pybroker/replica", "from ..server import Connection\n", "pybroker.server"),
        ("pybroker/cluster", "def f():\n    from pybroker import broker\n", "pybroker.broker"),
        ("pybroker/cluster", "from kazoo.client import KazooClient\n", "kazoo.client"),
        ("pybroker/quotas", "import trio\n", "trio"),
        ("pybroker/quotas", "from ..server import Connection\n", "pybroker.server"),
        ("pybroker/http_server.py", "from .broker import Broker\n", "pybroker.broker"),
        ("pybroker", "import kazoo\n", "kazoo"),
        ("pybroker/zkish", "from kazoo.exceptions import NoNodeError\n", "kazoo.exceptions"),
    ],
)
def test_the_layer_test_catches(tmp_path, folder, source, expected):
    """Each rule, broken on purpose in a scratch tree, is reported. A folder
    naming a file (``pybroker/server.py``) breaks the rule in that module."""
    for f in FOLDERS.values():
        (tmp_path / f).mkdir()
        (tmp_path / f / "__init__.py").write_text("")
    bad = tmp_path / folder if folder.endswith(".py") else tmp_path / folder / "bad.py"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text(source)
    found = violations(tmp_path, folders=tuple(FOLDERS.values()))
    assert list(found) == [module_name(bad, tmp_path)]
    assert any(_within(m, expected) for m in found[module_name(bad, tmp_path)])


def test_allowed_imports_pass(tmp_path):
    for f in FOLDERS.values():
        (tmp_path / f).mkdir()
    (tmp_path / "storage" / "ok.py").write_text("from pybroker.protocol.records import NewRecord\nfrom .log import x\n")
    (tmp_path / "protocol" / "ok.py").write_text("from . import primitives\nfrom .errors import EncodeError\n")
    # The server may use the handlers; the broker (the composition root) may use the server.
    (tmp_path / "pybroker" / "server.py").write_text("from .handlers import Later\n")
    (tmp_path / "pybroker" / "broker.py").write_text("from .server import Connection\n")
    # kazoo belongs to pybroker.zk.
    (tmp_path / "pybroker" / "zk").mkdir()
    (tmp_path / "pybroker" / "zk" / "client.py").write_text("from kazoo.client import KazooClient\n")
    assert violations(tmp_path, folders=tuple(FOLDERS.values())) == {}


def test_the_lower_layers_load_nothing_of_the_broker():
    """``pybroker.protocol`` and ``pybroker.storage`` are imported through
    the ``pybroker`` package (installed names): its ``__init__`` must pull in
    neither trio nor any other part of the broker, so the layer rule holds
    at run time as well as in the source."""
    import subprocess
    import sys

    code = (
        "import sys, pkgutil, importlib, pybroker.protocol, pybroker.storage\n"
        "for pkg in (pybroker.protocol, pybroker.storage):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "loaded = sorted(n for n in sys.modules if n == 'trio' or n.startswith('trio.')\n"
        "    or (n.startswith('pybroker.') and not n.startswith(('pybroker.protocol', 'pybroker.storage'))))\n"
        "print(loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def absolute_pybroker_imports(root: Path, folders=("protocol", "storage")) -> list[str]:
    """``file:line`` of each import under ``folders`` that names pybroker:
    they reach each other relatively (storage's ``..protocol``), so the
    folders never import pybroker, whatever name they are installed under."""
    found = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = (
                    [a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                    else []
                )
                if any(_within(n, "pybroker") for n in names):
                    found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_protocol_and_storage_never_name_pybroker():
    assert absolute_pybroker_imports(ROOT) == []


def test_an_absolute_pybroker_import_in_storage_is_caught(tmp_path):
    (tmp_path / "storage").mkdir()
    (tmp_path / "protocol").mkdir()
    (tmp_path / "storage" / "log.py").write_text("from ..protocol.errors import X\nfrom pybroker.protocol import Y\n")
    assert absolute_pybroker_imports(tmp_path) == ["storage/log.py:2"]
