"""Tests for protocol.error_codes.

Expected values come from apache/kafka trunk 1eb7644349cb (Errors.java and the
exception classes in org.apache.kafka.common.errors).
"""

import pytest

from pybroker.protocol.error_codes import ErrorCode

MAX_CODE = 128


def test_codes_unique_and_contiguous():
    codes = [int(e) for e in ErrorCode]
    assert len(codes) == len(set(codes))
    # Kafka has no gaps: every value from -1 through the highest code is used.
    assert sorted(codes) == list(range(-1, MAX_CODE + 1))
    assert len(ErrorCode) == MAX_CODE + 2


def test_members_carry_metadata():
    for e in ErrorCode:
        assert isinstance(e.retriable, bool)
        assert isinstance(e.message, str) and e.message
        assert e.name.isupper()
        assert ErrorCode(int(e)) is e


def test_is_an_int():
    assert ErrorCode.UNKNOWN_TOPIC_OR_PARTITION == 3
    assert ErrorCode(3) is ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert ErrorCode.NONE == 0 and not ErrorCode.NONE
    assert ErrorCode.UNKNOWN_SERVER_ERROR == -1


@pytest.mark.parametrize(
    "name, code, retriable",
    [
        ("UNKNOWN_SERVER_ERROR", -1, False),
        ("NONE", 0, False),
        ("OFFSET_OUT_OF_RANGE", 1, False),
        ("CORRUPT_MESSAGE", 2, True),  # CorruptRecordException extends RetriableException
        ("UNKNOWN_TOPIC_OR_PARTITION", 3, True),  # via InvalidMetadataException
        ("LEADER_NOT_AVAILABLE", 5, True),
        ("NOT_LEADER_OR_FOLLOWER", 6, True),
        ("REQUEST_TIMED_OUT", 7, True),
        ("BROKER_NOT_AVAILABLE", 8, False),
        ("MESSAGE_TOO_LARGE", 10, False),
        ("NETWORK_EXCEPTION", 13, True),
        ("COORDINATOR_LOAD_IN_PROGRESS", 14, True),
        ("COORDINATOR_NOT_AVAILABLE", 15, True),
        ("NOT_COORDINATOR", 16, True),
        ("NOT_ENOUGH_REPLICAS", 19, True),
        ("REBALANCE_IN_PROGRESS", 27, False),
        ("TOPIC_AUTHORIZATION_FAILED", 29, False),
        ("UNSUPPORTED_VERSION", 35, False),
        ("TOPIC_ALREADY_EXISTS", 36, False),
        ("NOT_CONTROLLER", 41, True),
        ("INVALID_REQUEST", 42, False),
        ("OUT_OF_ORDER_SEQUENCE_NUMBER", 45, False),
        ("DUPLICATE_SEQUENCE_NUMBER", 46, False),
        ("INVALID_PRODUCER_EPOCH", 47, False),
        ("CONCURRENT_TRANSACTIONS", 51, True),
        ("KAFKA_STORAGE_ERROR", 56, True),
        ("UNKNOWN_PRODUCER_ID", 59, False),
        ("FETCH_SESSION_ID_NOT_FOUND", 70, True),
        ("FENCED_LEADER_EPOCH", 74, True),
        ("UNKNOWN_LEADER_EPOCH", 75, True),
        ("PRODUCER_FENCED", 90, False),
        ("POSITION_OUT_OF_RANGE", 99, False),
        ("UNKNOWN_TOPIC_ID", 100, True),
        ("INCONSISTENT_TOPIC_ID", 103, True),
        ("TRANSACTION_ABORTABLE", 120, False),
        ("INVALID_REGULAR_EXPRESSION", 128, False),
    ],
)
def test_spot_checks(name, code, retriable):
    e = ErrorCode[name]
    assert e == code
    assert e.retriable is retriable


def test_retriable_count():
    # 31 codes map to RetriableException subclasses in the reference commit.
    assert sum(e.retriable for e in ErrorCode) == 31


def test_constructor_rejects_unknown_codes():
    with pytest.raises(ValueError):
        ErrorCode(MAX_CODE + 1)


@pytest.mark.parametrize("code", [MAX_CODE + 1, 32767, -2, -32768])
def test_for_code_falls_back_to_unknown_server_error(code):
    assert ErrorCode.for_code(code) is ErrorCode.UNKNOWN_SERVER_ERROR


def test_for_code_known():
    assert ErrorCode.for_code(0) is ErrorCode.NONE
    assert ErrorCode.for_code(6) is ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert ErrorCode.for_code(-1) is ErrorCode.UNKNOWN_SERVER_ERROR
    for e in ErrorCode:
        assert ErrorCode.for_code(int(e)) is e


# --- cross-check against kafka-python ---------------------------------------

# kafka-python spells these names differently from Errors.java.
KAFKA_PYTHON_NAMES = {
    -1: "UNKNOWN",
    0: "NO_ERROR",
    6: "NOT_LEADER_FOR_PARTITION",  # Kafka renamed it NOT_LEADER_OR_FOLLOWER (KIP-392)
    10: "MESSAGE_SIZE_TOO_LARGE",
    17: "INVALID_TOPIC",
    39: "INVALID_REPLICATION_ASSIGNMENT",
}

# Codes where kafka-python's `retriable` flag is wrong compared with Errors.java.
KAFKA_PYTHON_WRONG_RETRIABLE = {
    # CorruptRecordException extends RetriableException, so Kafka treats
    # CORRUPT_MESSAGE as retriable; kafka-python's CorruptRecordError says False.
    2,
}


def _kafka_python_errors():
    import kafka.errors as kerrors
    return {code: cls for code, cls in kerrors.kafka_errors.items() if isinstance(code, int)}


def test_names_match_kafka_python():
    for code, cls in _kafka_python_errors().items():
        ours = ErrorCode.for_code(code)
        assert ours == code, f"kafka-python knows code {code} ({cls.message}), we do not"
        assert cls.message == KAFKA_PYTHON_NAMES.get(code, ours.name), code


def test_retriability_matches_kafka_python():
    for code, cls in _kafka_python_errors().items():
        expected = bool(cls.retriable)
        if code in KAFKA_PYTHON_WRONG_RETRIABLE:
            expected = not expected
        assert ErrorCode(code).retriable is expected, (code, cls.__name__)


def test_documented_exceptions_are_still_needed():
    # Keep the exception lists honest: each entry must still describe a real difference.
    known = _kafka_python_errors()
    for code, name in KAFKA_PYTHON_NAMES.items():
        assert known[code].message == name != ErrorCode(code).name
    for code in KAFKA_PYTHON_WRONG_RETRIABLE:
        assert bool(known[code].retriable) is not ErrorCode(code).retriable
