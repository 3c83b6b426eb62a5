"""How long a user's test waits for the first message of a new consumer
group: a small user project, run by pytest in its own process, starts a
broker with the plugin's ``kafka_broker_factory``, produces one message,
and times a new group's consumer (librdkafka) from ``subscribe`` to that
message. Once with the plugin's developer defaults, once with Kafka's
production default ``group.initial.rebalance.delay.ms=3000`` (what the
fixture gave before dev mode).

    python -m bench.first_message [--runs 5] [--output bench/RESULTS-first-message.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

PROJECT_TEST = textwrap.dedent(
    """
    import json
    import os
    import time
    import uuid

    from confluent_kafka import Consumer, Producer

    PROPS = json.loads(os.environ["FIRST_MESSAGE_PROPS"])


    def test_first_message_of_a_new_group(kafka_broker_factory):
        broker = kafka_broker_factory(PROPS)
        topic = "t-" + uuid.uuid4().hex[:8]
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
        producer.produce(topic, b"first")
        assert producer.flush(30) == 0
        consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "g-" + topic,
                             "auto.offset.reset": "earliest"})
        try:
            start = time.perf_counter()
            consumer.subscribe([topic])
            message = None
            while message is None or message.error():
                message = consumer.poll(0.05)
            elapsed = time.perf_counter() - start
        finally:
            consumer.close()
        with open(os.environ["FIRST_MESSAGE_OUT"], "w") as out:
            json.dump({"seconds": elapsed}, out)
    """
)

CASES = {
    "dev defaults (kafka_broker_factory)": {},
    "Kafka's default group.initial.rebalance.delay.ms=3000": {"group.initial.rebalance.delay.ms": "3000"},
}


def run_once(project: Path, props: dict) -> float:
    out = project / "result.json"
    env = dict(os.environ, FIRST_MESSAGE_PROPS=json.dumps(props), FIRST_MESSAGE_OUT=str(out))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", str(project)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the user project failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(out.read_text())["seconds"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.first_message", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--output", type=Path, help="write a Markdown table here")
    args = parser.parse_args(argv)
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="pybroker-first-message-") as tmp:
        project = Path(tmp)
        (project / "test_user.py").write_text(PROJECT_TEST)
        for _ in range(args.runs):  # interleaved, so that noise falls on both cases alike
            for name, props in CASES.items():
                results.setdefault(name, []).append(run_once(project, props))
    lines = [
        f"First message of a new consumer group in a user's pytest run ({args.runs} runs each, interleaved)",
        "",
        "| broker settings | median s | min s | max s |",
        "| --- | --- | --- | --- |",
    ]
    for name, times in results.items():
        lines.append(f"| {name} | {statistics.median(times):.3f} | {min(times):.3f} | {max(times):.3f} |")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.output:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
