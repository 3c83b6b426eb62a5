"""Kafka protocol error codes.

Every response carries one or more int16 error codes.  `ErrorCode` lists all
of them with the enum names Kafka itself uses, plus two facts per code:

* ``retriable`` -- True when the Java client's exception for the code extends
  ``RetriableException`` (directly or through ``InvalidMetadataException``),
  i.e. the same request may succeed if sent again, possibly after a metadata
  refresh.
* ``message`` -- a short human description (our own wording).

The table reflects apache/kafka trunk at commit
1eb7644349cb07139d6a3c1ad1986979647cac99 (2024-10-25, version 4.0.0-SNAPSHOT),
file clients/src/main/java/org/apache/kafka/common/protocol/Errors.java, and
the exception hierarchy under clients/src/main/java/org/apache/kafka/common/
errors/.  Codes run from -1 to 128 with no gaps.

Usage::

    ErrorCode(3)               # UNKNOWN_TOPIC_OR_PARTITION; ValueError if unknown
    ErrorCode.for_code(9999)   # UNKNOWN_SERVER_ERROR instead of raising
    ErrorCode.NOT_COORDINATOR.retriable   # True
"""

from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    """A Kafka error code; an int, with ``retriable`` and ``message`` attached."""

    retriable: bool
    message: str

    def __new__(cls, code: int, retriable: bool, message: str) -> ErrorCode:
        member = int.__new__(cls, code)
        member._value_ = code
        member.retriable = retriable
        member.message = message
        return member

    @classmethod
    def for_code(cls, code: int) -> ErrorCode:
        """The member for ``code``, or UNKNOWN_SERVER_ERROR if there is none."""
        return cls._value2member_map_.get(code, cls.UNKNOWN_SERVER_ERROR)  # type: ignore

    # name = code, retriable, message
    UNKNOWN_SERVER_ERROR = -1, False, "Unexpected server error while handling the request."
    NONE = 0, False, "No error."
    OFFSET_OUT_OF_RANGE = 1, False, "Offset is outside the range the server holds."
    CORRUPT_MESSAGE = 2, True, "Message fails its CRC, has a bad size, or is otherwise corrupt."
    UNKNOWN_TOPIC_OR_PARTITION = 3, True, "This server does not host the topic-partition."
    INVALID_FETCH_SIZE = 4, False, "Requested fetch size is invalid."
    LEADER_NOT_AVAILABLE = 5, True, "Partition has no leader right now (election in progress)."
    NOT_LEADER_OR_FOLLOWER = 6, True, "Broker is not the leader (or not a replica) here."
    REQUEST_TIMED_OUT = 7, True, "Request timed out."
    BROKER_NOT_AVAILABLE = 8, False, "Broker is not available."
    REPLICA_NOT_AVAILABLE = 9, True, "Replica is not available for the partition."
    MESSAGE_TOO_LARGE = 10, False, "Message exceeds the largest size the server accepts."
    STALE_CONTROLLER_EPOCH = 11, False, "Controller has moved to another broker."
    OFFSET_METADATA_TOO_LARGE = 12, False, "Offset commit metadata is too large."
    NETWORK_EXCEPTION = 13, True, "Connection closed before a response arrived."
    COORDINATOR_LOAD_IN_PROGRESS = 14, True, "Coordinator is still loading its state."
    COORDINATOR_NOT_AVAILABLE = 15, True, "Coordinator is not available."
    NOT_COORDINATOR = 16, True, "Broker is not the coordinator for this group or transaction."
    INVALID_TOPIC_EXCEPTION = 17, False, "Operation targets an invalid topic."
    RECORD_LIST_TOO_LARGE = 18, False, "Record batch is larger than the configured segment size."
    NOT_ENOUGH_REPLICAS = 19, True, "Rejected: fewer in-sync replicas than required."
    NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20, True, "Appended, but to too few in-sync replicas."
    INVALID_REQUIRED_ACKS = 21, False, "Produce request has an invalid acks value."
    ILLEGAL_GENERATION = 22, False, "Group generation id is not valid."
    INCONSISTENT_GROUP_PROTOCOL = 23, False, "Member protocols are empty or clash with the group."
    INVALID_GROUP_ID = 24, False, "Group id is invalid."
    UNKNOWN_MEMBER_ID = 25, False, "Coordinator does not know this member."
    INVALID_SESSION_TIMEOUT = 26, False, "Session timeout is outside the range the broker allows."
    REBALANCE_IN_PROGRESS = 27, False, "Group is rebalancing; the member must rejoin."
    INVALID_COMMIT_OFFSET_SIZE = 28, False, "Offset commit data has an invalid size."
    TOPIC_AUTHORIZATION_FAILED = 29, False, "Not authorized to access the topic."
    GROUP_AUTHORIZATION_FAILED = 30, False, "Not authorized to access the group."
    CLUSTER_AUTHORIZATION_FAILED = 31, False, "Not authorized for this cluster operation."
    INVALID_TIMESTAMP = 32, False, "Message timestamp is outside the accepted range."
    UNSUPPORTED_SASL_MECHANISM = 33, False, "Broker does not support the SASL mechanism."
    ILLEGAL_SASL_STATE = 34, False, "Request is not valid in the current SASL state."
    UNSUPPORTED_VERSION = 35, False, "API version is not supported."
    TOPIC_ALREADY_EXISTS = 36, False, "A topic with this name already exists."
    INVALID_PARTITIONS = 37, False, "Partition count is invalid (below 1)."
    INVALID_REPLICATION_FACTOR = 38, False, "Replication factor below 1 or above broker count."
    INVALID_REPLICA_ASSIGNMENT = 39, False, "Replica assignment is invalid."
    INVALID_CONFIG = 40, False, "Configuration is invalid."
    NOT_CONTROLLER = 41, True, "Broker is not the active controller."
    INVALID_REQUEST = 42, False, "Malformed request, or sent to an incompatible broker."
    UNSUPPORTED_FOR_MESSAGE_FORMAT = 43, False, "Broker's message format cannot serve the request."
    POLICY_VIOLATION = 44, False, "Request violates the configured policy."
    OUT_OF_ORDER_SEQUENCE_NUMBER = 45, False, "Producer sequence number arrived out of order."
    DUPLICATE_SEQUENCE_NUMBER = 46, False, "Producer sequence number is a duplicate."
    INVALID_PRODUCER_EPOCH = 47, False, "Producer used an outdated epoch."
    INVALID_TXN_STATE = 48, False, "Transactional operation is invalid in the current state."
    INVALID_PRODUCER_ID_MAPPING = 49, False, "Producer id is not mapped to this transactional id."
    INVALID_TRANSACTION_TIMEOUT = 50, False, "Transaction timeout exceeds the broker's maximum."
    CONCURRENT_TRANSACTIONS = 51, True, "Another operation on the same transaction is in progress."
    TRANSACTION_COORDINATOR_FENCED = 52, False, "Marker sender is no longer the coordinator."
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53, False, "Not authorized for this transactional id."
    SECURITY_DISABLED = 54, False, "Security features are disabled."
    OPERATION_NOT_ATTEMPTED = 55, False, "Skipped because another part of the batch failed."
    KAFKA_STORAGE_ERROR = 56, True, "Disk error while accessing the log."
    LOG_DIR_NOT_FOUND = 57, False, "Log directory is not in the broker's configuration."
    SASL_AUTHENTICATION_FAILED = 58, False, "SASL authentication failed."
    UNKNOWN_PRODUCER_ID = 59, False, "Broker has no state for this producer id."
    REASSIGNMENT_IN_PROGRESS = 60, False, "A partition reassignment is in progress."
    DELEGATION_TOKEN_AUTH_DISABLED = 61, False, "Delegation tokens are not enabled."
    DELEGATION_TOKEN_NOT_FOUND = 62, False, "Delegation token not found."
    DELEGATION_TOKEN_OWNER_MISMATCH = 63, False, "Principal is not the token's owner or renewer."
    DELEGATION_TOKEN_REQUEST_NOT_ALLOWED = 64, False, "Token requests not allowed on this channel."
    DELEGATION_TOKEN_AUTHORIZATION_FAILED = 65, False, "Not authorized for this delegation token."
    DELEGATION_TOKEN_EXPIRED = 66, False, "Delegation token has expired."
    INVALID_PRINCIPAL_TYPE = 67, False, "Principal type is not supported."
    NON_EMPTY_GROUP = 68, False, "Group is not empty."
    GROUP_ID_NOT_FOUND = 69, False, "Group id does not exist."
    FETCH_SESSION_ID_NOT_FOUND = 70, True, "Fetch session id not found."
    INVALID_FETCH_SESSION_EPOCH = 71, True, "Fetch session epoch is invalid."
    LISTENER_NOT_FOUND = 72, True, "Leader has no listener matching this one."
    TOPIC_DELETION_DISABLED = 73, False, "Topic deletion is disabled."
    FENCED_LEADER_EPOCH = 74, True, "Request's leader epoch is older than the broker's."
    UNKNOWN_LEADER_EPOCH = 75, True, "Request's leader epoch is newer than the broker's."
    UNSUPPORTED_COMPRESSION_TYPE = 76, False, "Client cannot read the partition's compression."
    STALE_BROKER_EPOCH = 77, False, "Broker epoch is stale."
    OFFSET_NOT_AVAILABLE = 78, True, "New leader's high watermark has not caught up yet."
    MEMBER_ID_REQUIRED = 79, False, "Member must obtain a member id before joining the group."
    PREFERRED_LEADER_NOT_AVAILABLE = 80, True, "Preferred leader is not available."
    GROUP_MAX_SIZE_REACHED = 81, False, "Group has reached its maximum size."
    FENCED_INSTANCE_ID = 82, False, "Another member registered with the same group.instance.id."
    ELIGIBLE_LEADERS_NOT_AVAILABLE = 83, True, "No eligible leader is available for the partition."
    ELECTION_NOT_NEEDED = 84, True, "Leader election is not needed for the partition."
    NO_REASSIGNMENT_IN_PROGRESS = 85, False, "No partition reassignment is in progress."
    GROUP_SUBSCRIBED_TO_TOPIC = 86, False, "Cannot delete offsets of a topic the group consumes."
    INVALID_RECORD = 87, False, "Record failed broker-side validation."
    UNSTABLE_OFFSET_COMMIT = 88, True, "Pending transactional offsets must settle first."
    THROTTLING_QUOTA_EXCEEDED = 89, True, "Throttling quota exceeded."
    PRODUCER_FENCED = 90, False, "A newer producer with the same transactional id fenced this one."
    RESOURCE_NOT_FOUND = 91, False, "Request refers to a resource that does not exist."
    DUPLICATE_RESOURCE = 92, False, "Request refers to the same resource twice."
    UNACCEPTABLE_CREDENTIAL = 93, False, "Credential does not meet the acceptability criteria."
    INCONSISTENT_VOTER_SET = 94, False, "Sender or receiver is not one of the expected voters."
    INVALID_UPDATE_VERSION = 95, False, "Update version is invalid."
    FEATURE_UPDATE_FAILED = 96, False, "Finalized features could not be updated."
    PRINCIPAL_DESERIALIZATION_FAILURE = 97, False, "Forwarded principal could not be deserialized."
    SNAPSHOT_NOT_FOUND = 98, False, "Snapshot not found."
    POSITION_OUT_OF_RANGE = 99, False, "Position is negative or beyond the end of the snapshot."
    UNKNOWN_TOPIC_ID = 100, True, "This server does not host the topic id."
    DUPLICATE_BROKER_REGISTRATION = 101, False, "Broker id is already registered."
    BROKER_ID_NOT_REGISTERED = 102, False, "Broker id is not registered."
    INCONSISTENT_TOPIC_ID = 103, True, "Log's topic id differs from the request's."
    INCONSISTENT_CLUSTER_ID = 104, False, "Request's cluster id differs from the server's."
    TRANSACTIONAL_ID_NOT_FOUND = 105, False, "Transactional id not found."
    FETCH_SESSION_TOPIC_ID_ERROR = 106, True, "Fetch session used topic ids inconsistently."
    INELIGIBLE_REPLICA = 107, False, "Proposed ISR contains an ineligible replica."
    NEW_LEADER_ELECTED = 108, False, "Partition state updated, but the leader has changed."
    OFFSET_MOVED_TO_TIERED_STORAGE = 109, False, "Offset now lives in tiered storage."
    FENCED_MEMBER_EPOCH = 110, False, "Member epoch is fenced; release partitions and rejoin."
    UNRELEASED_INSTANCE_ID = 111, False, "Instance id is still held by another group member."
    UNSUPPORTED_ASSIGNOR = 112, False, "Assignor or its versions not supported."
    STALE_MEMBER_EPOCH = 113, False, "Member epoch is stale; retry after a heartbeat."
    MISMATCHED_ENDPOINT_TYPE = 114, False, "Request sent to the wrong type of endpoint."
    UNSUPPORTED_ENDPOINT_TYPE = 115, False, "Endpoint type is not supported yet."
    UNKNOWN_CONTROLLER_ID = 116, False, "Controller id is not known."
    UNKNOWN_SUBSCRIPTION_ID = 117, False, "Telemetry subscription id is invalid or outdated."
    TELEMETRY_TOO_LARGE = 118, False, "Telemetry push exceeds the broker's maximum size."
    INVALID_REGISTRATION = 119, False, "Controller judged the broker registration invalid."
    TRANSACTION_ABORTABLE = 120, False, "Transaction failed; abort it and carry on."
    INVALID_RECORD_STATE = 121, False, "Record state is invalid; delivery acknowledgement failed."
    SHARE_SESSION_NOT_FOUND = 122, True, "Share session not found."
    INVALID_SHARE_SESSION_EPOCH = 123, True, "Share session epoch is invalid."
    FENCED_STATE_EPOCH = 124, False, "Share-group state epoch does not match."
    INVALID_VOTER_KEY = 125, False, "Voter key does not match the receiving replica."
    DUPLICATE_VOTER = 126, False, "Voter is already in the voter set."
    VOTER_NOT_FOUND = 127, False, "Voter is not in the voter set."
    INVALID_REGULAR_EXPRESSION = 128, False, "Regular expression is invalid."
