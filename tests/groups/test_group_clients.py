"""Consumer groups through real clients over real sockets.

Every consumer runs in its own child process (``consumer_worker.py``):
confluent-kafka, kafka-python or aiokafka, subscribed to one topic with
manual commits (commit after processing each batch). A worker reports each
assignment, revocation, delivered message and acknowledged commit as a
JSON line, so the test sees what every member saw, in order, even for a
member it kills with SIGKILL. A producer thread keeps writing while
members join, leave and crash.

What is checked, per partition, over the whole run (``check_deliveries``):
the partition has one owner at a time; each owner's deliveries are
consecutive offsets starting exactly at the group's last committed offset
(so nothing is skipped, and nothing below a commit is delivered again:
re-deliveries are only of offsets the member that lost the partition had
not committed) or at the commit the previous owner had sent and not heard
back about (it was killed meanwhile: the broker may have stored it); every
produced offset is delivered, with the value it was produced with; the
final commit is the log end.

Scenarios: three members get two partitions each of six; one closes (it
leaves the group) and the other two cover all six well within the session
timeout; one is killed and the survivors cover all six once its session
has expired (not before). With cooperative-sticky the survivors keep their
partitions through rebalances; a static member (group.instance.id) that
restarts within its session gets its partitions back and nobody else sees a
rebalance. Committed offsets survive a graceful broker restart and a kill
-9. The admin clients list, describe and delete groups.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pybroker.testing import running_broker

from ..broker.clients import Confluent
from ..broker.workload import unique_topic, wait_for

WORKER = Path(__file__).with_name("consumer_worker.py")
PARTITIONS = 6
SESSION_MS = 6000
HEARTBEAT_MS = 500
CLIENT_NAMES = ["confluent-kafka", "kafka-python", "aiokafka"]
BROKER_PROPS = {
    "group.initial.rebalance.delay.ms": "300",
    "offsets.topic.num.partitions": "4",
    "num.partitions": str(PARTITIONS),
}


@pytest.fixture(scope="module")
def broker():
    with running_broker(BROKER_PROPS) as b:
        yield b


# -- members in child processes --------------------------------------------------------------


class GroupLog:
    """Every worker's reports, in arrival order (per worker: its own order)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events: list[dict] = []

    def add(self, event: dict) -> None:
        with self.lock:
            self.events.append(event)

    def of(self, member: str) -> list[dict]:
        with self.lock:
            return [e for e in self.events if e["m"] == member]

    def members(self) -> list[str]:
        with self.lock:
            return list(dict.fromkeys(e["m"] for e in self.events))

    def committed(self) -> dict[int, int]:
        """The highest acknowledged commit per partition."""
        out: dict[int, int] = {}
        with self.lock:
            for e in self.events:
                if e["ev"] == "commit":
                    for p, o in e["c"].items():
                        out[int(p)] = max(out.get(int(p), 0), o)
        return out


class Worker:
    def __init__(
        self, log: GroupLog, tmp: Path, name: str, client: str, bootstrap: str, topic: str, group: str, **opts
    ):
        self.log, self.name = log, name
        cfg = {"client": client, "bootstrap": bootstrap, "topic": topic, "group": group, "name": name}
        cfg.update(session_ms=SESSION_MS, heartbeat_ms=HEARTBEAT_MS)
        cfg.update(opts)
        self.stderr_path = tmp / f"{name}.stderr"
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(WORKER), json.dumps(cfg)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                cwd=Path(__file__).parents[2],
            )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:  # something else printed to stdout: keep it for the diagnosis
                event = {"ev": "stdout", "err": line.rstrip(), "t": time.monotonic()}
            event["m"] = self.name
            self.log.add(event)

    def events(self) -> list[dict]:
        return self.log.of(self.name)

    def assignment(self) -> set[int]:
        owned: set[int] = set()
        for e in self.events():
            if e["ev"] == "assign":
                owned |= set(e["p"])
            elif e["ev"] in ("revoke", "lost"):
                owned -= set(e["p"])
        return owned

    def stderr(self) -> str:
        return self.stderr_path.read_text()[-3000:]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30) -> None:
        """Graceful close: the worker closes its consumer and exits."""
        self.proc.stdin.write("stop\n")
        self.proc.stdin.close()
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not close in {timeout}s:\n{self.stderr()}") from None
        self.reader.join(10)
        assert code == 0, f"{self.name} exited with {code}:\n{self.stderr()}"
        assert self.events()[-1]["ev"] == "closed", self.stderr()

    def kill(self) -> None:
        """A crash: SIGKILL by PID, no LeaveGroup, no last commit."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self.reader.join(10)


class Group:
    """The workers of one group on one topic, started and checked together."""

    def __init__(self, tmp: Path, client: str, bootstrap: str, topic: str, group: str, **opts):
        self.log = GroupLog()
        self.tmp, self.client, self.bootstrap, self.topic, self.group = tmp, client, bootstrap, topic, group
        self.opts = opts
        self.workers: dict[str, Worker] = {}

    def start(self, name: str, **opts) -> Worker:
        w = Worker(
            self.log, self.tmp, name, self.client, self.bootstrap, self.topic, self.group, **{**self.opts, **opts}
        )
        self.workers[name] = w
        return w

    def diagnose(self) -> str:
        lines = []
        for w in self.workers.values():
            lines.append(f"{w.name} alive={w.alive()} assignment={sorted(w.assignment())}")
            lines += [f"  {e['ev']} {e.get('p', e.get('err', ''))}" for e in w.events() if e["ev"] != "msgs"][-12:]
            if w.stderr().strip():
                lines.append("  stderr: " + w.stderr()[-1500:])
        return "\n".join(lines)

    def wait(self, condition, timeout: float, what: str):
        try:
            return wait_for(condition, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnose()}") from None

    def split(self, members: list[Worker], sizes: list[int]) -> bool:
        """True when these members' assignments are disjoint, cover every
        partition, and have these sizes."""
        owned = [w.assignment() for w in members]
        union = set().union(*owned)
        return (
            union == set(range(PARTITIONS))
            and sum(map(len, owned)) == PARTITIONS
            and sorted(map(len, owned)) == sorted(sizes)
        )

    def wait_split(self, members: list[Worker], sizes: list[int], timeout: float = 30) -> float:
        start = time.monotonic()
        self.wait(lambda: self.split(members, sizes), timeout, f"{[w.name for w in members]} to own {sizes} partitions")
        return time.monotonic() - start

    def wait_drained(self, produced: dict[int, dict[int, str]], timeout: float = 30) -> None:
        ends = {p: len(produced.get(p, {})) for p in range(PARTITIONS)}
        self.wait(
            lambda: all(self.log.committed().get(p, 0) >= end for p, end in ends.items()),
            timeout,
            f"commits to reach the log ends {ends}",
        )

    def close_all(self) -> None:
        for w in self.workers.values():
            if w.alive():
                w.stop()

    def kill_all(self) -> None:
        for w in self.workers.values():
            w.kill()


@pytest.fixture
def groups(tmp_path):
    made: list[Group] = []

    def make(*args, **kw) -> Group:
        g = Group(tmp_path, *args, **kw)
        made.append(g)
        return g

    yield make
    for g in made:
        g.kill_all()


class Feeder:
    """A producer thread that writes numbered messages round the partitions
    until stopped; ``produced`` maps partition -> offset -> value."""

    def __init__(self, bootstrap: str, topic: str, partitions: int = PARTITIONS, after: Feeder | None = None):
        """``after``: a feeder (of an earlier broker run) to carry on from."""
        from confluent_kafka import Producer

        self.topic, self.partitions = topic, partitions
        # log_level 2: no reconnect chatter from producers of a broker run that has ended
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2, "log_level": 2})
        self.produced: dict[int, dict[int, str]] = after.produced if after else defaultdict(dict)
        self.errors: list = []
        self.count = after.count if after else 0
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def _report(self, err, msg) -> None:
        if err is not None:
            self.errors.append(err)
        else:
            self.produced[msg.partition()][msg.offset()] = msg.value().decode()

    def send(self, n: int) -> None:
        for _ in range(n):
            self.producer.produce(
                self.topic, value=f"m{self.count}", partition=self.count % self.partitions, on_delivery=self._report
            )
            self.count += 1
        assert self.producer.flush(30) == 0
        assert not self.errors, self.errors[:3]

    def start(self) -> Feeder:
        def run():
            while not self.stopping.is_set():
                self.send(6)
                self.stopping.wait(0.03)  # pacing: about 200 messages a second, not a synchronisation

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> dict[int, dict[int, str]]:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(60)
        assert self.producer.flush(30) == 0
        assert not self.errors, self.errors[:3]
        return self.produced


# -- the delivery check --------------------------------------------------------------------------


@dataclass
class Tenure:
    """One member's ownership of one partition, from its assignment to its
    revocation (or its last report, for a killed member)."""

    member: str
    start: float
    last: float
    offsets: list[int] = field(default_factory=list)
    commits: list[int] = field(default_factory=list)
    in_flight: int | None = None  # a commit sent and not acknowledged (yet)


def check_deliveries(log: GroupLog, produced: dict[int, dict[int, str]], partitions: int = PARTITIONS) -> dict:
    """The at-least-once contract of manual commits, partition by partition
    (see the module docstring). Returns how many deliveries were repeats."""
    repeats = 0
    for p in range(partitions):
        tenures: list[Tenure] = []
        for member in log.members():
            current: Tenure | None = None
            for e in log.of(member):
                kind = e["ev"]
                if kind == "assign" and p in e["p"]:
                    assert current is None, f"{member} was given partition {p} twice without a revocation"
                    current = Tenure(member, e["t"], e["t"])
                    tenures.append(current)
                elif kind in ("revoke", "lost") and p in e["p"]:
                    assert current is not None, f"{member} lost partition {p}, which it did not own"
                    current.last, current = e["t"], None
                elif kind == "msgs":
                    rows = [(o, v) for q, o, v in e["d"] if q == p]
                    if rows:
                        assert current is not None, f"{member} got messages of partition {p} without owning it"
                        for o, v in rows:
                            assert produced[p].get(o) == v, (
                                f"partition {p} offset {o}: read {v!r}, produced {produced[p].get(o)!r}"
                            )
                        current.offsets += [o for o, _ in rows]
                        current.last = e["t"]
                elif kind == "committing" and str(p) in e["c"] and current is not None:
                    current.in_flight = e["c"][str(p)]
                elif kind == "commit" and str(p) in e["c"]:
                    assert current is not None, f"{member} committed partition {p} without owning it"
                    current.commits.append(e["c"][str(p)])
                    current.in_flight = None
                    current.last = e["t"]
        tenures.sort(key=lambda t: t.start)
        for before, after in itertools.pairwise(tenures):
            assert before.last <= after.start, (
                f"partition {p} had two owners at once: {before.member} until {before.last:.3f}, "
                f"{after.member} from {after.start:.3f}"
            )
        committed, seen, unheard = 0, set(), None
        for t in tenures:
            if t.offsets:
                first = t.offsets[0]
                if first == unheard:
                    committed = first  # the previous owner's last commit did reach the broker
                assert first == committed, (
                    f"partition {p}: {t.member} started at offset {first} but the last commit was {committed} "
                    f"({'a gap' if first > committed else 'a re-delivery below a committed offset'})"
                )
                expect = list(range(first, first + len(t.offsets)))
                assert t.offsets == expect, f"partition {p}: {t.member} read {t.offsets[:20]}..., not consecutive"
                repeats += len(seen & set(t.offsets))
                seen |= set(t.offsets)
            top = t.offsets[-1] + 1 if t.offsets else committed
            for c in t.commits:
                assert committed <= c <= top, f"partition {p}: {t.member} committed {c} outside [{committed}, {top}]"
                committed = c
            unheard = t.in_flight
        end = len(produced.get(p, {}))
        assert seen == set(range(end)), f"partition {p}: offsets never delivered: {sorted(set(range(end)) - seen)[:20]}"
        assert committed == end, f"partition {p}: last commit {committed}, log end {end}"
    return {"repeats": repeats}


def synthetic_log(*events: tuple) -> GroupLog:
    """A GroupLog from (member, time, kind, payload) tuples, for testing the check."""
    log = GroupLog()
    for member, t, kind, payload in events:
        key = {"assign": "p", "revoke": "p", "msgs": "d", "committing": "c", "commit": "c"}[kind]
        log.add({"m": member, "t": t, "ev": kind, key: payload})
    return log


def test_delivery_check_catches_violations():
    """The check itself: a clean hand-over passes, each broken one fails."""
    produced = {0: {o: f"v{o}" for o in range(4)}}
    rows = lambda *offs: [[0, o, f"v{o}"] for o in offs]
    base = [("a", 1, "assign", [0]), ("a", 2, "msgs", rows(0, 1, 2)), ("a", 3, "commit", {"0": 2})]
    # a loses partition 0 having committed 2 (offset 2 read but not committed): b re-reads 2.
    good = [
        *base,
        ("a", 4, "revoke", [0]),
        ("b", 5, "assign", [0]),
        ("b", 6, "msgs", rows(2, 3)),
        ("b", 7, "commit", {"0": 4}),
    ]
    assert check_deliveries(synthetic_log(*good), produced, 1) == {"repeats": 1}
    # a is killed with its commit of 3 sent but not acknowledged: the broker
    # kept it, and b starts at 3.
    unheard = [
        *base,
        ("a", 3.2, "committing", {"0": 3}),
        ("b", 5, "assign", [0]),
        ("b", 6, "msgs", rows(3)),
        ("b", 7, "commit", {"0": 4}),
    ]
    assert check_deliveries(synthetic_log(*unheard), produced, 1) == {"repeats": 0}
    broken = {
        "a gap": [
            *base,
            ("a", 4, "revoke", [0]),
            ("b", 5, "assign", [0]),
            ("b", 6, "msgs", rows(3)),
            ("b", 7, "commit", {"0": 4}),
        ],

        "below a committed offset": [
            *base,
            ("a", 4, "revoke", [0]),
            ("b", 5, "assign", [0]),
            ("b", 6, "msgs", rows(1, 2, 3)),
            ("b", 7, "commit", {"0": 4}),
        ],
        "two owners": [
            *base,
            ("b", 3.5, "assign", [0]),
            ("a", 4, "revoke", [0]),
            ("b", 6, "msgs", rows(2, 3)),
            ("b", 7, "commit", {"0": 4}),
        ],
        "never delivered": [*base, ("a", 4, "revoke", [0])],
        "not consecutive": [("a", 1, "assign", [0]), ("a", 2, "msgs", rows(0, 2, 1, 3)), ("a", 3, "commit", {"0": 4})],
        "without owning it": [("a", 2, "msgs", rows(0, 1, 2, 3)), ("a", 3, "commit", {"0": 4})],
    }
    for name, events in broken.items():
        with pytest.raises(AssertionError, match=name):
            check_deliveries(synthetic_log(*events), produced, 1)
    # Only the commit in flight may have been kept, not one further on.
    further = [*base, ("a", 3.2, "committing", {"0": 2}), *broken["a gap"][4:]]
    with pytest.raises(AssertionError, match="a gap"):
        check_deliveries(synthetic_log(*further), produced, 1)
    wrong_value = [
        ("a", 1, "assign", [0]),
        ("a", 2, "msgs", [[0, 0, "v0"], [0, 1, "other"], [0, 2, "v2"], [0, 3, "v3"]]),
    ]
    with pytest.raises(AssertionError, match="produced"):
        check_deliveries(synthetic_log(*wrong_value), produced, 1)


def make_topic(bootstrap: str, prefix: str, partitions: int = PARTITIONS) -> str:
    topic = unique_topic(prefix)
    Confluent(bootstrap).create_topic(topic, partitions)
    return topic


# -- three members: graceful leave and crash ---------------------------------------------------------


@pytest.mark.parametrize("client", CLIENT_NAMES)
def test_members_leave_and_crash(broker, groups, client):
    bootstrap = broker.bootstrap_servers
    topic = make_topic(bootstrap, "members")
    group = groups(client, bootstrap, topic, unique_topic("g-members"))
    feeder = Feeder(bootstrap, topic)
    feeder.send(60)
    feeder.start()
    a, b, c = (group.start(n) for n in "abc")
    group.wait_split([a, b, c], [2, 2, 2])

    # c closes: it leaves the group, so a and b take its partitions as soon
    # as they hear of the rebalance (a heartbeat), not after its session.
    c.stop()
    took = group.wait_split([a, b], [3, 3], timeout=SESSION_MS / 1000)
    assert took < SESSION_MS / 1000

    d = group.start("d")
    group.wait_split([a, b, d], [2, 2, 2])

    # b crashes: no LeaveGroup. Its partitions stay its own until its
    # session runs out; then a and d take them.
    before_kill = time.monotonic()
    b.kill()
    group.wait_split([a, d], [3, 3], timeout=SESSION_MS / 1000 + 20)
    took = time.monotonic() - before_kill
    assert took >= (SESSION_MS - 2 * HEARTBEAT_MS) / 1000, f"b's partitions moved {took:.2f}s after it died"

    produced = feeder.stop()
    group.wait_drained(produced)
    group.close_all()
    check_deliveries(group.log, produced)


# -- cooperative-sticky (confluent-kafka) and static membership ----------------------------------------


def changes_since(worker: Worker, mark: int) -> tuple[set[int], set[int]]:
    """(assigned, revoked) partitions in the worker's reports after ``mark``."""
    assigned, revoked = set(), set()
    for e in worker.events()[mark:]:
        if e["ev"] == "assign":
            assigned |= set(e["p"])
        elif e["ev"] in ("revoke", "lost"):
            revoked |= set(e["p"])
    return assigned, revoked


def test_cooperative_sticky_survivors_keep_partitions(broker, groups):
    bootstrap = broker.bootstrap_servers
    topic = make_topic(bootstrap, "coop")
    group = groups("confluent-kafka", bootstrap, topic, unique_topic("g-coop"), strategy="cooperative-sticky")
    feeder = Feeder(bootstrap, topic)
    feeder.send(60)
    feeder.start()
    a, b = group.start("a"), group.start("b")
    group.wait_split([a, b], [3, 3])

    # c joins: a and b each give up exactly one partition and keep the
    # other two throughout (an eager rebalance would revoke all three).
    before = {w.name: w.assignment() for w in (a, b)}
    marks = {w.name: len(w.events()) for w in (a, b)}
    c = group.start("c")
    group.wait_split([a, b, c], [2, 2, 2])
    for w in (a, b):
        assigned, revoked = changes_since(w, marks[w.name])
        assert w.assignment() <= before[w.name], f"{w.name} was given {w.assignment() - before[w.name]}"
        assert revoked == before[w.name] - w.assignment() and len(revoked) == 1, (w.name, before[w.name], revoked)
        assert not assigned, f"{w.name}: partitions {assigned} were revoked and assigned again"
    assert c.assignment() == set().union(*(before[n] for n in before)) - a.assignment() - b.assignment()

    # c leaves: a and b get its partitions added; nothing is taken from them.
    before = {w.name: w.assignment() for w in (a, b)}
    marks = {w.name: len(w.events()) for w in (a, b)}
    c.stop()
    took = group.wait_split([a, b], [3, 3], timeout=SESSION_MS / 1000)
    assert took < SESSION_MS / 1000
    for w in (a, b):
        assigned, revoked = changes_since(w, marks[w.name])
        assert not revoked, f"{w.name} had {revoked} revoked when c left"
        assert w.assignment() == before[w.name] | assigned and len(assigned) == 1

    produced = feeder.stop()
    group.wait_drained(produced)
    group.close_all()
    check_deliveries(group.log, produced)


@pytest.mark.parametrize("client", CLIENT_NAMES)
def test_static_member_restart_keeps_assignment_without_rebalance(broker, groups, client):
    bootstrap = broker.bootstrap_servers
    topic = make_topic(bootstrap, "static")
    # A longer session, so that the restart (a new process) fits in it.
    session_ms = 15000
    group = groups(client, bootstrap, topic, unique_topic("g-static"), session_ms=session_ms)
    feeder = Feeder(bootstrap, topic)
    feeder.send(60)
    feeder.start()
    a, b, c = (group.start(n, instance_id=f"instance-{n}") for n in "abc")
    group.wait_split([a, b, c], [2, 2, 2])

    owned_by_b = b.assignment()
    marks = {w.name: len(w.events()) for w in (a, c)}
    # A static member's close() does not send LeaveGroup: the group keeps
    # its place (and partitions) until its session expires.
    stopped_at = time.monotonic()
    b.stop()
    b2 = group.start("b2", instance_id="instance-b")
    group.wait(lambda: b2.assignment(), session_ms / 1000, "the restarted static member's assignment")
    assert time.monotonic() - stopped_at < session_ms / 1000
    assert b2.assignment() == owned_by_b
    assert group.split([a, b2, c], [2, 2, 2])

    produced = feeder.stop()
    group.wait_drained(produced)
    # Neither other member saw a rebalance at any point.
    for w in (a, c):
        assert changes_since(w, marks[w.name]) == (set(), set()), f"{w.name} saw a rebalance"
    group.close_all()
    check_deliveries(group.log, produced)


# -- committed offsets across broker restarts ----------------------------------------------------------


def committed_on_broker(bootstrap: str, group_id: str) -> dict[int, int]:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(group_id)[group_id]
    finally:
        admin.close()
    return {tp.partition: om.offset for tp, om in offsets.items()}


@pytest.mark.parametrize("client", CLIENT_NAMES)
def test_committed_offsets_survive_broker_restart_and_kill(broker_process, groups, client):
    proc = broker_process(BROKER_PROPS)
    topic = make_topic(proc.bootstrap, "durable-commits")
    group_id = unique_topic("g-durable")
    group = groups(client, proc.bootstrap, topic, group_id)
    feeder = None
    for step, stop in enumerate([None, "graceful", "kill -9"]):
        if stop is not None:
            committed = group.log.committed()
            proc.restart(kill=stop == "kill -9")
            after = committed_on_broker(proc.bootstrap, group_id)
            assert after == committed, f"after a {stop} restart the broker has commits {after}, not {committed}"
        feeder = Feeder(proc.bootstrap, topic, after=feeder)
        feeder.send(120)
        # A new consumer process in the same group each time: it must start
        # exactly at the commits of the one before, through the restart.
        worker = group.start(f"w{step}")
        group.wait_drained(feeder.produced)
        worker.stop()
    stats = check_deliveries(group.log, feeder.produced)
    assert stats["repeats"] == 0, "every commit was acknowledged, yet offsets were delivered twice"


@pytest.mark.parametrize("client", CLIENT_NAMES)
def test_live_group_survives_broker_restarts(broker_process, groups, client):
    """Members that keep running while the broker goes away and comes back
    (kill -9, then a graceful restart) stay members: the group is read back
    from __consumer_offsets as it was, so nobody rebalances, and consumption
    carries on where it was with nothing skipped or read twice past a commit."""
    proc = broker_process(BROKER_PROPS)
    topic = make_topic(proc.bootstrap, "live")
    group = groups(client, proc.bootstrap, topic, unique_topic("g-live"))
    feeder = Feeder(proc.bootstrap, topic)
    feeder.send(60)
    a, b = group.start("a"), group.start("b")
    group.wait_split([a, b], [3, 3])
    group.wait_drained(feeder.produced)
    marks = {w.name: len(w.events()) for w in (a, b)}
    for kill in (True, False):
        proc.restart(kill=kill)
        feeder = Feeder(proc.bootstrap, topic, after=feeder)
        feeder.send(60)
        group.wait_drained(feeder.produced)
    for w in (a, b):
        assert changes_since(w, marks[w.name]) == (set(), set()), f"{w.name} was rebalanced:\n{group.diagnose()}"
    group.close_all()
    check_deliveries(group.log, feeder.produced)


# -- admin: list, describe, delete ---------------------------------------------------------------------


def test_admin_list_describe_delete(broker, groups):
    from confluent_kafka import Consumer, ConsumerGroupState, KafkaError, KafkaException, TopicPartition
    from confluent_kafka.admin import AdminClient
    from kafka.admin import KafkaAdminClient

    bootstrap = broker.bootstrap_servers
    topic = make_topic(bootstrap, "admin")
    group_id = unique_topic("g-admin")
    group = groups("confluent-kafka", bootstrap, topic, group_id)
    feeder = Feeder(bootstrap, topic)
    feeder.send(30)
    a, b = group.start("a"), group.start("b")
    group.wait_split([a, b], [3, 3])
    group.wait_drained(feeder.stop())
    owned = {w.name: w.assignment() for w in (a, b)}

    # A simple group: offsets committed without joining (generation -1).
    simple_id = unique_topic("g-simple")
    simple = Consumer({"bootstrap.servers": bootstrap, "group.id": simple_id, "enable.auto.commit": False})
    simple.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
    simple.close()

    # A join refused for its session timeout (below the broker's minimum)
    # must not leave an empty group behind.
    refused_id = unique_topic("g-refused")
    refused = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": refused_id,
            "session.timeout.ms": 1000,
            "heartbeat.interval.ms": 100,
        }
    )
    refused.subscribe([topic])

    def refusal():
        msg = refused.poll(0.2)
        return msg.error() if msg is not None and msg.error() else None

    assert wait_for(refusal, 20, "the refused join").code() == KafkaError.INVALID_SESSION_TIMEOUT
    refused.close()

    admin = AdminClient({"bootstrap.servers": bootstrap})
    kp = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        listed = {g.group_id: g for g in admin.list_consumer_groups().result(30).valid}
        assert listed[group_id].state == ConsumerGroupState.STABLE and not listed[group_id].is_simple_consumer_group
        assert listed[simple_id].is_simple_consumer_group
        assert refused_id not in listed
        kp_listed = {g["group_id"]: g for g in kp.list_groups()}
        assert kp_listed[group_id]["protocol_type"] == "consumer" and kp_listed[simple_id]["protocol_type"] == ""

        desc = admin.describe_consumer_groups([group_id])[group_id].result(30)
        assert desc.state == ConsumerGroupState.STABLE and desc.partition_assignor == "range"
        assert sorted(m.client_id for m in desc.members) == ["a", "b"]
        for m in desc.members:
            assert {tp.partition for tp in m.assignment.topic_partitions} == owned[m.client_id]
            assert {tp.topic for tp in m.assignment.topic_partitions} == {topic}

        # kafka-python decodes the subscription and assignment bytes itself.
        kdesc = kp.describe_groups([group_id])[group_id]
        assert kdesc["error"] is None, kdesc
        assert (kdesc["group_state"], kdesc["protocol_type"], kdesc["protocol_data"]) == ("Stable", "consumer", "range")
        assert sorted(m["client_id"] for m in kdesc["members"]) == ["a", "b"]
        for m in kdesc["members"]:
            assigned = m["member_assignment"]["assigned_partitions"]
            assert [t["topic"] for t in assigned] == [topic], kdesc
            assert set(assigned[0]["partitions"]) == owned[m["client_id"]], kdesc
            assert m["member_metadata"]["topics"] == [topic], kdesc

        # Members present: neither client may delete the group.
        with pytest.raises(KafkaException) as refused:
            admin.delete_consumer_groups([group_id])[group_id].result(30)
        assert refused.value.args[0].code() == KafkaError.NON_EMPTY_GROUP
        assert kp.delete_groups([group_id]) == {group_id: "NonEmptyGroupError"}

        group.close_all()
        listed = {g.group_id: g for g in admin.list_consumer_groups().result(30).valid}
        assert listed[group_id].state == ConsumerGroupState.EMPTY
        desc = admin.describe_consumer_groups([group_id])[group_id].result(30)
        assert desc.state == ConsumerGroupState.EMPTY and not desc.members

        assert kp.delete_groups([group_id]) == {group_id: "OK"}
        assert admin.delete_consumer_groups([simple_id])[simple_id].result(30) is None
        with pytest.raises(KafkaException) as missing:
            admin.delete_consumer_groups([group_id])[group_id].result(30)
        assert missing.value.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND

        listed = {g.group_id for g in admin.list_consumer_groups().result(30).valid}
        assert not {group_id, simple_id} & listed
        assert not {group_id, simple_id} & {g["group_id"] for g in kp.list_groups()}
        gone = admin.describe_consumer_groups([group_id])[group_id].result(30)
        assert gone.state == ConsumerGroupState.DEAD and not gone.members
        assert kp.describe_groups([group_id])[group_id]["group_state"] == "Dead"
        assert committed_on_broker(bootstrap, group_id) == {} and committed_on_broker(bootstrap, simple_id) == {}
    finally:
        kp.close()
