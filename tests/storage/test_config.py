"""The topic-config table and the log settings it makes."""

import pytest

from pybroker.protocol.records import NewRecord, build_batch
from pybroker.storage.config import TOPIC_CONFIGS, LogConfig
from pybroker.storage.log import PartitionLog

T0 = 1_700_000_000_000


def test_every_key_has_a_valid_default_a_doc_and_an_attribute():
    defaults = LogConfig()
    for name, key in TOPIC_CONFIGS.items():
        assert key.doc and key.type in ("INT", "LONG", "DOUBLE", "BOOLEAN", "STRING", "LIST"), name
        key.validate(key.default)
        assert hasattr(defaults, key.attr), name
    assert LogConfig.from_props(defaults.to_props()) == defaults


@pytest.mark.parametrize(
    "raw, parsed",
    [(" 5 ", 5), ("+7", 7), ("-1", -1)],
)
def test_integers_parse_as_java_does(raw, parsed):
    assert LogConfig.from_props({"retention.ms": raw}).retention_ms == parsed


@pytest.mark.parametrize("raw", ["5_000", "1e3", "0x10", "", "5.0"])
def test_integers_java_would_not_parse_are_refused(raw):
    with pytest.raises(
        ValueError, match=f"Invalid value {raw} for configuration retention.ms: Not a number of type LONG"
    ):
        LogConfig.from_props({"retention.ms": raw})


def test_list_items_and_the_empty_list():
    assert LogConfig.from_props({"cleanup.policy": " compact , delete "}).cleanup_policy == {"compact", "delete"}
    assert LogConfig.from_props({"cleanup.policy": "  "}).cleanup_policy == frozenset()
    with pytest.raises(ValueError, match="Invalid value  for configuration cleanup.policy"):
        LogConfig.from_props({"cleanup.policy": "compact,,delete"})


def _append(log, ts):
    log.append(build_batch([NewRecord(b"k", b"v", (), ts)]), now=ts)


def test_segment_jitter_rolls_a_segment_earlier(tmp_path):
    cfg = LogConfig(segment_ms=1000, segment_jitter_ms=1000)
    jitter = cfg.roll_jitter_ms(0)
    assert 0 < jitter < 1000 and cfg.roll_jitter_ms(0) == jitter
    jittered = PartitionLog(tmp_path / "j-0", cfg)
    plain = PartitionLog(tmp_path / "p-0", LogConfig(segment_ms=1000))
    for log in (jittered, plain):
        _append(log, T0)
        _append(log, T0 + 1000 - jitter + 1)
    assert [s.base_offset for s in jittered.segments] == [0, 1]
    assert [s.base_offset for s in plain.segments] == [0]
    # The jitter is drawn below min(segment.jitter.ms, segment.ms).
    assert LogConfig(segment_ms=10, segment_jitter_ms=10**9).roll_jitter_ms(12345) < 10
