"""What TLS and SASL cost: one pybroker with three listeners, PLAINTEXT,
SSL and SASL_SSL, and the same workloads on each, interleaved in one run.

    python -m bench.tls [--quick] [--rounds 5] [--output FILE] [--dir DIR]

Per round, every case runs once on every listener, the listeners' order
turning from round to round so that drift on the shared machine falls on
all three alike:

- produce 1 KiB, acks=1 and acks=all: the harness's producers (3 librdkafka
  processes, linger.ms=5) into a fresh 6-partition topic, every message
  acknowledged and the high watermarks checked (bench.workloads);
- consume 1 KiB: one librdkafka group consumer reads a topic filled once
  before the rounds, from the beginning, every message checked once;
- fetch 1 KiB (PLAINTEXT and SSL): the broker's side of consuming, back-to-
  back Fetches of the same topic on one connection, nothing decoded (the
  load generator's ``fetch``). SASL_SSL sends its data as SSL does, so its
  raw client, which speaks no SASL, is left out.

PLAINTEXT sends a Fetch's record data with sendfile; a TLS connection
cannot, and reads it from the segment files to encrypt it. The tables give
the median of the rounds and each secured listener's median over
PLAINTEXT's; the broker's CPU seconds per GB moved say what the broker paid
when the clients, not the broker, set the pace. A full run writes
``bench/RESULTS-tls.md``; ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

from pybroker.process import free_port
from pybroker.sasl import SUPPORTED_MECHANISMS
from tests.tls_certs import make_certs

from .brokers import REPO, BrokerProcess, pybroker_kind
from .clients import loadgen_argv, run_together
from .harness import machine
from .workloads import FULL, QUICK, Run

LISTENERS = ("PLAINTEXT", "SSL", "SASL_SSL")
USER, PASSWORD = "bench", "bench-secret"
# SCRAM when the broker has it (the mechanism a production SASL_SSL
# listener would use), else PLAIN.
MECHANISM = "SCRAM-SHA-512" if "SCRAM-SHA-512" in SUPPORTED_MECHANISMS else "PLAIN"
CASES = ("produce-1k-acks1", "produce-1k-acksall", "consume-1k", "fetch-1k")
GB = 1e9


@dataclasses.dataclass(frozen=True)
class Listener:
    name: str
    bootstrap: str
    conf: dict  # librdkafka settings to connect to it
    ca: str | None  # the raw Fetch client's TLS trust (None: plaintext)


def broker_props(ports: dict, certs) -> dict:
    props = {
        "listeners": ",".join(f"{name}://127.0.0.1:{port}" for name, port in ports.items()),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(certs.server.both),
        "sasl.enabled.mechanisms": MECHANISM,
        # Joining a group is not what is measured here: no initial delay.
        "group.initial.rebalance.delay.ms": "0",
    }
    if MECHANISM == "PLAIN":
        props["sasl.jaas.config"] = (
            f'org.apache.kafka.common.security.plain.PlainLoginModule required user_{USER}="{PASSWORD}";'
        )
    return props


def add_user(bootstrap: str) -> None:
    """SCRAM: the user's credential, made as Kafka's are (AlterUserScramCredentials)."""
    if MECHANISM == "PLAIN":
        return
    from confluent_kafka.admin import (
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion(USER, info, PASSWORD.encode())]
    ).values():
        future.result(60)


def listeners(ports: dict, certs) -> list[Listener]:
    ca = str(certs.ca.path)
    tls = {"security.protocol": "SSL", "ssl.ca.location": ca}
    sasl = {
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": ca,
        "sasl.mechanisms": MECHANISM,
        "sasl.username": USER,
        "sasl.password": PASSWORD,
    }
    confs = {"PLAINTEXT": ({}, None), "SSL": (tls, ca), "SASL_SSL": (sasl, ca)}
    return [Listener(name, f"127.0.0.1:{ports[name]}", *confs[name]) for name in LISTENERS]


class Rounds:
    """The cases, round after round, on every listener of one broker."""

    def __init__(self, broker: BrokerProcess, plan, workdir: Path, progress):
        self.run = Run(broker, plan, workdir)
        self.plan = plan
        self.progress = progress
        self.figures: dict[tuple[str, str], list[dict]] = {}
        self.flags: list[str] = []
        self.topics = 0

    def use(self, listener: Listener) -> None:
        self.run.client_bootstrap = listener.bootstrap
        self.run.client_conf = listener.conf

    def fill(self, listener: Listener) -> tuple[str, int]:
        """The topic every consume and fetch reads, written once on ``listener``."""
        topic = "bench-tls-read"
        self.run.create_topic(topic, 6)
        self.use(listener)
        self.run.run_producers(topic, self.plan.count_1k, 1024, "1", self.flags)
        return topic, self.plan.count_1k

    def produce(self, listener: Listener, acks: str) -> dict:
        self.topics += 1
        topic = f"bench-tls-{self.topics}"
        self.run.create_topic(topic, 6)
        self.use(listener)
        r = self.run.run_producers(topic, self.plan.count_1k, 1024, acks, self.flags)
        self.delete(topic)
        return {"msg_s": r["msgs"], "mb_s": r["mbs"], "cpu_s": r["cpu"], "bytes": self.sent_bytes()}

    def sent_bytes(self) -> int:
        return self.plan.producers * self.plan.count_1k * 1024

    def consume(self, listener: Listener, topic: str, count: int, n: int) -> dict:
        self.use(listener)
        r = self.run.run_consumer(topic, f"bench-tls-{listener.name}-{n}", count, 1024, False, self.flags)
        return {"msg_s": r["msg_s"], "mb_s": r["mb_s"], "cpu_s": r["cpu_s"], "bytes": self.sent_bytes()}

    def fetch(self, listener: Listener, topic: str) -> dict | None:
        if listener.name == "SASL_SSL":
            return None
        argv = loadgen_argv(
            "fetch",
            bootstrap=listener.bootstrap,
            topic=topic,
            expect=self.plan.producers * self.plan.count_1k,
            passes=1,
            ca=listener.ca,
        )
        (result,), cpu, _ = self.run.measured(lambda: run_together([argv], self.run.client_log, timeout=600))
        self.flags += result["problems"]
        (one,) = result["passes"]
        return {
            "msg_s": one["records"] / one["seconds"],
            "mb_s": one["bytes"] / one["seconds"] / 1e6,
            "cpu_s": cpu,
            "bytes": one["bytes"],
        }

    def delete(self, topic: str) -> None:
        """A measured topic is dropped at once: the rounds would otherwise
        leave gigabytes behind them."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.run.broker.bootstrap})
        admin.delete_topics([topic], operation_timeout=60)[topic].result(120)

    def record(self, case: str, listener: Listener, fn, *args) -> None:
        self.progress(f"{case} on {listener.name}")
        try:
            figures = fn(*args)
        except Exception as exc:  # noqa: BLE001 - one failed run must not hide the others
            traceback.print_exc()
            self.flags.append(f"{case} on {listener.name} failed: {type(exc).__name__}: {exc}")
            return
        if figures is not None:
            self.figures.setdefault((case, listener.name), []).append(figures)

    def rounds(self, count: int, on: list[Listener]) -> None:
        topic, per_producer = self.fill(on[0])
        for n in range(count):
            # Each round starts with another listener.
            order = on[n % len(on) :] + on[: n % len(on)]
            for listener in order:
                self.record("produce-1k-acks1", listener, self.produce, listener, "1")
            for listener in order:
                self.record("produce-1k-acksall", listener, self.produce, listener, "all")
            for listener in order:
                self.record("consume-1k", listener, self.consume, listener, topic, per_producer, n)
            for listener in order:
                self.record("fetch-1k", listener, self.fetch, listener, topic)


def medians(runs: list[dict]) -> dict:
    out = {key: statistics.median(r[key] for r in runs if r[key] is not None) for key in ("msg_s", "mb_s")}
    out["cpu_per_gb"] = statistics.median(r["cpu_s"] / (r["bytes"] / GB) for r in runs)
    out["lo"] = min(r["mb_s"] for r in runs if r["mb_s"] is not None)
    out["hi"] = max(r["mb_s"] for r in runs if r["mb_s"] is not None)
    out["runs"] = len(runs)
    return out


ABOUT = {
    "produce-1k-acks1": (
        "3 librdkafka producer processes at once, 1 KiB values, linger.ms=5, acks=1, into a fresh"
        " 6-partition topic; MB/s counts value bytes acknowledged."
    ),
    "produce-1k-acksall": "As above, acks=all (one broker: the answer waits for the fsync).",
    "consume-1k": (
        "One librdkafka group consumer reads the 6-partition topic from the beginning (librdkafka's"
        " defaults: up to 1 MiB per partition per fetch), every message checked; timed from its first message"
        " to the last."
    ),
    "fetch-1k": (
        "The broker's side of consuming: one connection, back-to-back Fetches (1 MiB per partition, 50 MiB"
        " per response) of the same topic, batches counted, not decoded; MB/s counts response bytes. Not on"
        " SASL_SSL: its data goes as SSL's does, and the raw client speaks no SASL."
    ),
}


def render(figures: dict, meta: dict) -> str:
    m = meta["machine"]
    lines = [
        "# pybroker over TLS and SASL_SSL",
        "",
        (
            f"Generated by `{meta['command']}` on {meta['date']} in {meta['seconds'] / 60:.1f} min: one pybroker"
            f" ({meta['version']}) with a PLAINTEXT, an SSL and a SASL_SSL ({MECHANISM}) listener; every case ran"
            f" {meta['rounds']} round(s) on every listener, interleaved, the order of the listeners turning each"
            " round. Medians of the rounds; ratios are a secured listener's median over PLAINTEXT's. Load"
            f" generator: {meta['loadgen']}."
        ),
        "",
        (
            f"- Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB memory, Linux {m['kernel']},"
            f" Python {m['python']}; load average {m['load']:.2f} at the start. The broker, the load generator's"
            " processes and other people's work share these cores: every figure is noisy; compare within a"
            " table, not across runs."
        ),
        f"- TLS: {meta['tls']}.",
        "",
    ]
    for case in CASES:
        lines += [f"## {case}", "", ABOUT[case], ""]
        lines += [
            "| listener | msg/s | MB/s | MB/s min–max | broker CPU s per GB | / PLAINTEXT (MB/s) | rounds |",
            "|---|---|---|---|---|---|---|",
        ]
        base = figures.get((case, "PLAINTEXT"))
        for name in LISTENERS:
            runs = figures.get((case, name))
            if not runs:
                continue
            f = medians(runs)
            ratio = f"{f['mb_s'] / medians(base)['mb_s']:.2f}×" if base and name != "PLAINTEXT" else ""
            lines.append(
                f"| {name} | {f['msg_s']:,.0f} | {f['mb_s']:,.1f} | {f['lo']:,.0f}–{f['hi']:,.0f}"
                f" | {f['cpu_per_gb']:.2f} | {ratio} | {f['runs']} |"
            )
        lines.append("")
    if meta["flags"]:
        lines += ["## problems", ""] + [f"- {flag}" for flag in meta["flags"]] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.tls", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts, one round: a smoke run, not a measurement")
    ap.add_argument("--rounds", type=int, help="rounds (default 5, --quick 1)")
    ap.add_argument("--count", type=int, help="messages per producer (default 100,000)")
    ap.add_argument("--pybroker-src", help="measure another pybroker source tree (before/after a change)")
    ap.add_argument("--output", help="where to write the Markdown (default: a full run bench/RESULTS-tls.md)")
    ap.add_argument("--dir", help="working directory (default: a new temporary one, removed after)")
    args = ap.parse_args(argv)
    base_plan = QUICK if args.quick else FULL
    plan = dataclasses.replace(base_plan, count_1k=args.count or (5_000 if args.quick else 100_000), repeats=1)
    rounds = args.rounds or (1 if args.quick else 5)
    command = " ".join(
        ["python -m bench.tls"]
        + (["--quick"] if args.quick else [])
        + ([f"--rounds {args.rounds}"] if args.rounds else [])
        + ([f"--count {args.count}"] if args.count else [])
    )
    import confluent_kafka

    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="pybroker-bench-tls-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    def progress(msg: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] {msg}", file=sys.stderr, flush=True)

    before = machine()
    ports = {name: free_port() for name in LISTENERS}
    broker = None
    try:
        certs = make_certs(work / "certs")
        kind = pybroker_kind(Path(args.pybroker_src) if args.pybroker_src else None, props=broker_props(ports, certs))
        broker = BrokerProcess(kind, work / "pybroker-data", port=ports["PLAINTEXT"])
        broker.start()
        add_user(broker.bootstrap)
        bench = Rounds(broker, plan, work, progress)
        bench.rounds(rounds, listeners(ports, certs))
    finally:
        if broker is not None:
            broker.stop()
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
        else:
            shutil.rmtree(work / "pybroker-data", ignore_errors=True)
    meta = {
        "command": command,
        "date": datetime.date.today().isoformat(),
        "seconds": time.monotonic() - started,
        "version": kind.version,
        "rounds": rounds,
        "machine": before,
        "loadgen": f"confluent-kafka {confluent_kafka.version()[0]} (librdkafka {confluent_kafka.libversion()[0]}),"
        f" {plan.producers} producers × {plan.count_1k:,} messages",
        "tls": "the broker's certificate is ECDSA P-256; TLS 1.3 with OpenSSL's default cipher suites on both"
        " sides; no client certificate",
        "flags": bench.flags,
    }
    text = render(bench.figures, meta)
    print(text)
    out = Path(args.output) if args.output else None
    if out is None and not args.quick:
        out = REPO / "bench" / "RESULTS-tls.md"
    if out is not None:
        out.write_text(text)
        print(f"written to {out}", file=sys.stderr)
    missing = [f"{c} on {n}" for c in CASES for n in LISTENERS if (c, n) not in bench.figures]
    missing = [m for m in missing if m != "fetch-1k on SASL_SSL"]
    for problem in bench.flags + [f"no figures: {m}" for m in missing]:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if bench.flags or missing else 0


if __name__ == "__main__":
    sys.exit(main())
