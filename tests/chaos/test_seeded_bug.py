"""The checker catches a real bug: brokers whose leaders take their own
log end as the high watermark (``buggy_broker --bug hw-is-leo``: acks=all
answered without the followers), the leader killed with kill -9 while
producers write. Followers are made to trail by up to a second
(``replica.fetch.min.bytes`` large, ``replica.fetch.wait.max.ms`` 1000:
legal settings, harmless to a correct broker, which then just answers
acks=all later), so that at the kill the leader holds acknowledged
writes no follower has; the new leader lacks them, the old one truncates
them away on its return, and the checker must say they were lost."""

from __future__ import annotations

from .cluster import buggy_command
from .runner import run
from .scenarios import Scenario, _repeat

TRAILING_FOLLOWERS = {"replica.fetch.min.bytes": "10000000", "replica.fetch.wait.max.ms": "1000"}


def test_checker_reports_lost_writes_of_a_broker_that_acks_before_replicating(tmp_path):
    # Two kills: one is nearly always enough; the second bounds the bad luck
    # of a kill that falls right after a follower's fetch.
    scenario = Scenario("seeded-hw-is-leo", "kill -9 the leader of a buggy cluster", _repeat("kill-leader", 2, (8, 8)))
    result = run(
        scenario,
        seed=7,
        out=tmp_path / "seeded",
        partitions=1,
        rate=200,
        command=buggy_command("hw-is-leo"),
        overrides=TRAILING_FOLLOWERS,
    )
    print(result.format())
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "seeded" / "logs").glob("broker-*.log"))
    assert "running with bug hw-is-leo" in logs
    assert result.report.counts["lost"] > 0, result.format()
    assert not result.ok
