"""pybroker installs nothing generic at the top level of an environment: a
user's project with its own ``protocol`` and ``storage`` packages keeps
them after ``pip install pybroker``, and pybroker's layers are found under
``pybroker.protocol`` and ``pybroker.storage``.

The wheel is built from this checkout and installed, without its
dependencies (they come from the running environment), into a fresh venv.
"""

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*cmd, cwd=None):
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_wheel_has_no_generic_top_level_packages(tmp_path):
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT))
    (wheel,) = tmp_path.glob("pybroker-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        tops = {name.split("/")[0] for name in zf.namelist()}
        names = zf.namelist()
    assert {t for t in tops if not t.endswith(".dist-info")} == {"pybroker"}
    assert "pybroker/protocol/schemas/LICENSE" in names
    assert "pybroker/storage/log.py" in names

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--system-site-packages", str(venv))
    python = venv / "bin" / "python"
    run(str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel))

    project = tmp_path / "project"
    for name in ("protocol", "storage"):
        (project / name).mkdir(parents=True)
        (project / name / "__init__.py").write_text(f'OWNER = "the user project {name}"\n')
    check = textwrap.dedent(
        """
        import protocol, storage
        import pybroker
        from pybroker.protocol.records import NewRecord, build_batch
        from pybroker.storage.log import PartitionLog
        from pybroker.broker import Broker
        assert protocol.OWNER == "the user project protocol", protocol.__file__
        assert storage.OWNER == "the user project storage", storage.__file__
        assert "site-packages" in pybroker.__file__, pybroker.__file__
        print("ok", pybroker.__version__)
        """
    )
    assert run(str(python), "-c", check, cwd=project).startswith("ok")


def test_the_pytest_plugin_imports_nothing_of_the_broker_until_a_fixture_is_used():
    """pytest loads the plugin in every session of an environment where
    pybroker is installed: loading it must not pull in the broker, Trio or
    the codec."""
    probe = textwrap.dedent(
        """
        import sys
        import pybroker.pytest_plugin
        heavy = sorted(m for m in sys.modules if m == "trio" or m.startswith(("pybroker.testing", "pybroker.protocol")))
        print(",".join(heavy))
        """
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "", out
