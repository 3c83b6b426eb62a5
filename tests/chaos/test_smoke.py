"""The smoke scenario against the real broker: kill -9 of a leader, a
SIGSTOPped leader held past its session, a SIGTERMed leader, while two
client libraries produce idempotently with acks=all and two consumers
read; every anomaly must be 0. About three minutes."""

from __future__ import annotations

from .runner import run
from .scenarios import SCENARIOS


def test_smoke_scenario_has_no_anomaly(tmp_path):
    result = run(SCENARIOS["smoke"], seed=1, out=tmp_path / "smoke")
    print(result.format())
    assert result.report.acks > 1000, result.format()
    assert len(result.report.faults) == 3, result.format()
    assert result.ok, result.format()
