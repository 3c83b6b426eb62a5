"""The groups package stands on its own: it never imports the composition
root (pybroker.broker, not even for type checking), and the offset store
does not import the coordinator that uses it (no import cycle)."""

from pathlib import Path

from tests.test_layers import ROOT, imported_modules


def _imports(name: str) -> set[str]:
    return imported_modules(ROOT / "pybroker" / "groups" / name, ROOT)


def test_groups_never_import_the_broker():
    for path in sorted((ROOT / "pybroker" / "groups").glob("*.py")):
        found = {m for m in _imports(path.name) if m == "pybroker.broker" or m.startswith("pybroker.broker.")}
        assert not found, f"{path.name} imports {found}"


def test_no_cycle_between_coordinator_and_offsets():
    assert not {m for m in _imports("offsets.py") if m.startswith("pybroker.groups.coordinator")}
    assert not {m for m in _imports("consumer_log.py") if m.startswith("pybroker.groups.coordinator")}
    assert not {m for m in _imports("writes.py") if m.startswith("pybroker.groups.coordinator")}


def test_the_group_handlers_take_services_not_the_broker():
    handlers = ROOT / "pybroker" / "handlers"
    for name in ("find_coordinator", "join_group", "sync_group", "heartbeat", "leave_group",
                 "consumer_group_heartbeat", "consumer_group_describe", "offset_commit", "offset_fetch",
                 "offset_delete", "list_groups", "describe_groups", "delete_groups"):
        assert "ctx.broker" not in Path(handlers / f"{name}.py").read_text(), name
