"""The transactional copy (txn_copy.py): its check over made-up outcomes,
and one real run against a three-broker cluster with brokers killed and
restarted and copiers killed while they copy. Seed 2 found two bugs: a
transactional offset commit refused after an epoch bump (its batch has no
sequence), and a coordinator that stopped finishing a commit when a
follower's controlled shutdown bumped its partition's leader epoch."""

from __future__ import annotations

from .txn_copy import STALL_S, _restart_stalled, check_copy, run

INPUT = {0: ["a0", "a1", "a2"], 1: ["b0"]}


def _clean(**changes):
    """The anomalies found when the copy differs from a faithful one by ``changes``."""
    outputs = changes.get("outputs", {0: [(0, "a0"), (1, "a1"), (3, "a2")], 1: [(0, "b0")]})
    reads = changes.get("reads", [(0, 0, "a0"), (0, 3, "a2")] if "outputs" not in changes else [])
    found = check_copy(INPUT, outputs, reads, changes.get("hanging", []))
    return {k: v for k, v in found.items() if v}


class _Copier:
    """A copier's outside, as the watchdog sees it: progress and its process."""

    def __init__(self, name: str):
        self.name, self.count, self.restarts, self.running = name, 0, 0, True
        self.proc = self

    def poll(self):
        return None if self.running else 0

    def done(self) -> bool:
        return not self.running

    def progress(self) -> int:
        return self.count

    def kill(self) -> None:
        pass

    def start(self) -> None:
        self.restarts += 1


def test_a_copier_committing_nothing_for_the_stall_time_is_restarted():
    moving, stuck, finished = _Copier("moving"), _Copier("stuck"), _Copier("finished")
    finished.running = False
    copiers = [moving, stuck, finished]
    last = {c.name: (0, 0.0) for c in copiers}
    for t in range(int(STALL_S) + 1):
        moving.count += 1
        _restart_stalled(copiers, last, float(t))
    assert (moving.restarts, stuck.restarts, finished.restarts) == (0, 0, 0)
    assert _restart_stalled(copiers, last, STALL_S + 10.0) == 1
    assert (moving.restarts, stuck.restarts, finished.restarts) == (0, 1, 0)
    # Counted from the restart on, not again at once.
    assert _restart_stalled(copiers, last, STALL_S + 11.0) == 0


def test_a_faithful_copy_has_no_anomaly():
    assert _clean() == {}


def test_each_anomaly_is_counted():
    assert _clean(outputs={0: [(0, "a0"), (1, "a2")], 1: [(0, "b0")]}) == {"missing": 1}
    assert _clean(outputs={0: [(0, "a0"), (1, "a1"), (2, "a1"), (3, "a2")], 1: [(0, "b0")]}) == {"duplicate": 1}
    assert _clean(outputs={0: [(0, "a1"), (1, "a0"), (3, "a2")], 1: [(0, "b0")]}) == {"order": 1}
    # The reader saw a2 at offset 2, where the committed output holds nothing: an aborted write.
    assert _clean(reads=[(0, 2, "a2")]) == {"aborted-read": 1}
    assert _clean(hanging=[1]) == {"hanging-transaction": 1}


def test_the_copy_survives_killed_brokers_and_copiers(tmp_path):
    result = run(seed=2, out=tmp_path / "copy", messages=20_000, faults=6)
    print(result.format())
    assert any("broker" in f for f in result.faults) and any("copier" in f for f in result.faults), result.format()
    assert result.ok, result.format()
