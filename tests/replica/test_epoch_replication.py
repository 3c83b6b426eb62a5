"""Kafka's EpochDrivenReplicationProtocolAcceptanceTest, deterministic.

Kafka runs these with real brokers and waits; here two (or three) real
partition logs are driven step by step through the broker's own
replication functions (replication_harness), leaders changed by hand as
the controller would, crashes simulated by cutting bytes off a segment
file and reopening it without a clean shutdown. Each case asserts what
Kafka's does — the logs end byte-identical, offsets never go backwards,
nothing acknowledged by both replicas is lost — and fails on a follower
that ignores leader epochs (truncating to its high watermark, or not at
all)."""

from __future__ import annotations

import pytest

from pybroker.protocol.records import Compression
from pybroker.replica.follower import Outcome

from .replication_harness import Cluster, message_batch

MSG = b"x" * 30
MSG_BIGGER = b"y" * 200


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    for node in c.nodes.values():
        if node.up:
            node.part.log.close()


def holding(node) -> list[tuple[int, int]]:
    return [(epoch, start) for epoch, start in node.log.epochs.entries if start < node.leo]


def assert_logs_match(cluster, a: int, b: int, epochs: bool = True) -> None:
    na, nb = cluster[a], cluster[b]
    assert na.leo == nb.leo
    assert [bytes(x.view) for x in na.batches()] == [bytes(x.view) for x in nb.batches()]
    if epochs:
        # A leader records its epoch when elected (Kafka's makeLeader), a
        # follower when it copies a batch of it: only the epochs holding
        # records must agree.
        assert holding(na) == holding(nb)
    for node in (na, nb):
        offsets = node.offsets()
        assert offsets == sorted(set(offsets)), "offsets go backwards or repeat"


def batch_size() -> int:
    return len(message_batch(MSG).view)


def test_follower_copies_and_epochs_propagate(cluster):
    """shouldFollowLeaderEpochBasicWorkflow."""
    cluster.start(100)
    cluster.start(101)
    cluster.elect(100)
    cluster[100].produce(message_batch(MSG))
    cluster.sync(101)
    assert cluster[100].log.epochs.entries == cluster[101].log.epochs.entries == [(0, 0)]
    cluster.elect(100)  # the follower bounced: epoch 1
    cluster[100].produce(message_batch(MSG))
    cluster.sync(101)
    assert cluster[101].log.epochs.entries == [(0, 0), (1, 1)]
    assert [b.partition_leader_epoch for b in cluster[101].batches()] == [0, 1]
    cluster.elect(101)  # the leader bounced: epoch 2
    cluster[101].produce(message_batch(MSG))
    cluster.sync(100)
    assert cluster[100].log.epochs.entries == cluster[101].log.epochs.entries == [(0, 0), (1, 1), (2, 2)]
    assert_logs_match(cluster, 100, 101)


def test_should_not_allow_divergent_logs(cluster):
    cluster.start(100)
    cluster.start(101)
    cluster.elect(100)
    for i in range(10):
        cluster[100].produce(message_batch(b"%d" % i + MSG))
    cluster.sync(101)
    assert cluster[101].leo == 10
    # Both stop, 101 first so that 100 stays the leader; 100 crashes
    # having lost its last five messages.
    cluster[101].stop()
    cluster[100].crash_losing(5 * batch_size())
    cluster.start(100, clean=False)
    assert cluster[100].leo == 5
    cluster.elect(100)
    for i in range(11, 20):
        cluster[100].produce(message_batch(b"%d" % i + MSG))
    cluster.start(101)
    outcomes = cluster.sync(101)
    assert outcomes[0] is Outcome.TRUNCATED  # at 5, where 100's epoch 0 ends
    assert_logs_match(cluster, 100, 101)
    assert cluster[100].file_bytes() == cluster[101].file_bytes()


def test_offsets_should_not_go_backwards(cluster):
    cluster.start(100)
    cluster.start(101)
    cluster.elect(100)
    for _ in range(100):
        cluster[100].produce(message_batch(MSG))
    cluster.sync(101)
    cluster[101].stop()
    size = cluster[100].segment_files()[-1].stat().st_size
    cluster[100].crash_losing(size // 2)
    cluster.start(100, clean=False)
    assert 40 < cluster[100].leo < 60
    cluster.elect(100)
    # Two large compressed batches: the follower's log end (100) falls in
    # the middle of the first, which a follower trusting its high
    # watermark would append after its own offset 99.
    for _ in range(2):
        cluster[100].produce(message_batch(MSG, n=77, compression=Compression.GZIP))
    cluster.start(101)
    cluster.sync(101)
    assert_logs_match(cluster, 100, 101)
    assert cluster[101].offsets() == list(range(cluster[101].leo))
    assert cluster[100].file_bytes() == cluster[101].file_bytes()


def test_should_survive_fast_leader_change(cluster):
    cluster.start(100)
    cluster.start(101)
    cluster.elect(100)
    cluster[100].produce(message_batch(MSG))
    cluster.sync(101)
    written = 1
    for _ in range(5):
        leader = cluster.leader_id
        follower = 101 if leader == 100 else 100
        cluster[leader].produce(message_batch(MSG))
        written += 1
        cluster.sync(follower)
        # Bounce the follower (the controller bumps the epoch), then the
        # leader: the follower takes over.
        cluster[follower].stop()
        cluster.elect(leader)
        cluster.start(follower)
        cluster.sync(follower)
        cluster[leader].stop()
        cluster.elect(follower)
        cluster.start(leader)
        cluster.sync(leader)
        assert cluster[100].leo == cluster[101].leo == written
        assert_logs_match(cluster, 100, 101)


def test_fast_leader_changes_need_more_than_one_round_trip(cluster):
    """KIP-279: the follower holds epochs its new leader never saw, and the
    first answer names an epoch the follower never saw either; it cuts
    back to its own older epoch and asks again."""
    for i in (100, 101):
        cluster.start(i)
    cluster.elect(100)  # epoch 0
    for _ in range(5):
        cluster[100].produce(message_batch(MSG))
    cluster.sync(101)
    cluster[100].produce(message_batch(MSG))  # offset 5, epoch 0: 101 never gets it
    cluster.elect(101)  # epoch 1, unclean of 100's offset 5
    for _ in range(3):
        cluster[101].produce(message_batch(MSG))  # 5..7 at epoch 1
    cluster.elect(100)  # epoch 2: 100 never fetched from 101
    for _ in range(2):
        cluster[100].produce(message_batch(MSG))  # 6..7 at epoch 2
    cluster.elect(101)  # epoch 3: 101 never fetched from 100
    cluster[101].produce(message_batch(MSG))  # 8 at epoch 3
    cluster.elect(100)  # epoch 4
    cluster[100].produce(message_batch(MSG))  # 8 at epoch 4
    assert cluster[101].log.epochs.entries == [(0, 0), (1, 5), (3, 8)]
    assert cluster[100].log.epochs.entries == [(0, 0), (2, 6), (4, 8)]
    outcomes = cluster.sync(101)
    # Asked with epoch 3: 100 answers epoch 2 ending at 8, unknown to 101,
    # which cuts its epoch 3 (at 8); asked with epoch 1: 100 answers epoch 0
    # ending at 6; 101's epoch 0 ends at 5: cut there, and copy.
    assert outcomes[:2] == [Outcome.TRUNCATED, Outcome.TRUNCATED]
    assert_logs_match(cluster, 100, 101)
    assert cluster[101].leo == 9


def test_logs_should_not_diverge_on_unclean_leader_elections(cluster):
    cluster.start(100)
    cluster.start(101)
    cluster.elect(100)
    cluster[100].produce(message_batch(MSG))
    cluster.sync(101)
    cluster[100].stop()
    cluster.elect(101)
    cluster[101].produce(message_batch(MSG))
    cluster[101].stop()
    cluster.start(100)
    cluster.elect(100)  # unclean: 100 lacks 101's offset 1
    for _ in range(3):
        cluster[100].produce(message_batch(MSG_BIGGER))
    cluster[100].stop()
    cluster.start(101)
    cluster.elect(101)  # unclean again
    cluster[101].produce(message_batch(MSG))
    cluster[101].stop()
    cluster.start(100)
    cluster.elect(100)
    for _ in range(2):
        cluster[100].produce(message_batch(MSG_BIGGER))
    cluster.start(101)
    cluster.sync(101)
    assert [b.crc for b in cluster[100].batches()] == [b.crc for b in cluster[101].batches()]
    assert_logs_match(cluster, 100, 101)


def test_three_replicas_converge_after_leader_changes(tmp_path):
    c = Cluster(tmp_path, ids=(1, 2, 3))
    try:
        for i in (1, 2, 3):
            c.start(i)
        c.elect(1)
        for _ in range(4):
            c[1].produce(message_batch(MSG))
        c.sync(2)
        c[1].produce(message_batch(MSG))
        c.elect(2)  # 1 has offset 4, which 2 and 3 lack
        c[2].produce(message_batch(MSG_BIGGER))
        c.sync(3)
        c.sync(1)
        for a, b in ((1, 2), (2, 3)):
            assert_logs_match(c, a, b)
        assert c[1].leo == 5
    finally:
        for node in c.nodes.values():
            if node.up:
                node.part.log.close()


# -- producer state, log start, out of range ------------------------------------------


def test_an_idempotent_retry_after_a_leader_change_is_neither_duplicated_nor_refused(cluster):
    cluster.start(100)
    cluster.start(101)
    cluster.elect(100)
    pid = {"producer_id": 7, "producer_epoch": 0}
    cluster[100].produce(message_batch(MSG, base_sequence=0, **pid))
    cluster.sync(101)
    cluster[100].produce(message_batch(MSG, base_sequence=1, **pid))  # not copied
    cluster.elect(101)
    # The producer retries sequence 1 on the new leader, which knows
    # sequence 0 from its follower append.
    retried = cluster[101].produce(message_batch(MSG, base_sequence=1, **pid))
    assert (retried.base_offset, retried.duplicate) == (1, False)
    cluster.sync(100)  # 100 cuts its own sequence 1 and copies 101's
    assert_logs_match(cluster, 100, 101)
    cluster.elect(100)
    again = cluster[100].produce(message_batch(MSG, base_sequence=1, **pid))
    assert (again.base_offset, again.duplicate) == (1, True)
    assert cluster[100].produce(message_batch(MSG, base_sequence=2, **pid)).base_offset == 2


def test_the_follower_log_start_follows_the_leader(tmp_path):
    from pybroker.storage.config import LogConfig

    c = Cluster(tmp_path, config=LogConfig(segment_bytes=300))
    try:
        c.start(100)
        c.start(101)
        c.elect(100)
        for _ in range(12):
            c[100].produce(message_batch(MSG))
        c.sync(101)
        assert len(c[101].log.segments) > 2
        c[100].log.set_high_watermark(12)  # committed, whatever the leader's rule for it
        c[100].part.delete_records(7)
        c.fetch_once(101)
        assert c[101].log.log_start_offset == 7
        assert c[101].log.segments[0].base_offset <= 7 < c[101].log.segments[1].base_offset
        assert c[101].log.high_watermark >= 7
    finally:
        for node in c.nodes.values():
            if node.up:
                node.part.log.close()


def test_a_follower_below_the_leaders_log_start_starts_over_there(tmp_path):
    from pybroker.storage.config import LogConfig

    c = Cluster(tmp_path, config=LogConfig(segment_bytes=300))
    try:
        c.start(100)
        c.start(101)
        c.elect(100)
        c[101].stop()
        for _ in range(12):
            c[100].produce(message_batch(MSG, n=3))
        c[100].log.set_high_watermark(36)
        c[100].part.delete_records(19)  # inside the batch 18..20
        c.start(101)
        assert c.fetch_once(101) is Outcome.OUT_OF_RANGE
        assert (c[101].log.log_start_offset, c[101].leo) == (19, 19)
        c.sync(101)
        assert (c[101].log.log_start_offset, c[101].leo) == (19, 36)
        assert [bytes(b.view) for b in c[101].batches()] == [bytes(b.view) for b in c[100].batches()]
        assert c[101].offsets()[0] == 18  # the batch holding the log start, whole
    finally:
        for node in c.nodes.values():
            if node.up:
                node.part.log.close()


def test_a_log_without_epochs_asks_offset_for_leader_epoch_first(cluster):
    cluster.start(100)
    cluster.start(101)
    cluster.elect(100)
    for _ in range(6):
        cluster[100].produce(message_batch(MSG))
    cluster.sync(101)
    cluster[100].produce(message_batch(MSG))
    # 101 loses its epoch checkpoint (a clean stop leaves nothing to
    # recover it from) while 100 leads on at a new epoch with a log that
    # differs after offset 5.
    cluster[101].stop()
    (cluster[101].dir / "leader-epoch-checkpoint").unlink()
    cluster[100].crash_losing(2 * batch_size())
    cluster.start(100, clean=False)
    cluster.elect(100)
    cluster[100].produce(message_batch(MSG_BIGGER))
    cluster.start(101)
    assert cluster[101].log.epochs.entries == [] and cluster[101].leo == 6
    outcomes = cluster.sync(101)
    assert outcomes[0] is Outcome.TRUNCATED  # OffsetForLeaderEpoch(0): epoch 0 ends at 5
    assert cluster[101].leo == 6
    assert_logs_match(cluster, 100, 101, epochs=False)  # 101's cache knows epoch 1 only
