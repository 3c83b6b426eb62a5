"""DescribeUserScramCredentials (api key 50) and
AlterUserScramCredentials (51), v0 (KIP-554), with the answers Kafka's
ZooKeeper-mode brokers give (ZkAdminManager).

Describe: every user with a SCRAM credential, sorted, when no users are
named; a named user without one is RESOURCE_NOT_FOUND, an empty name too,
a name given twice DUPLICATE_RESOURCE. Iterations are all it reveals.

Alter: the client sends the salt and the salted password (never the
password); the broker derives and stores the keys. Per user: an empty
name or bad iterations (4096..16384) is UNACCEPTABLE_CREDENTIAL, an
unknown mechanism UNSUPPORTED_SASL_MECHANISM, the same user and mechanism
twice DUPLICATE_RESOURCE, deleting what does not exist RESOURCE_NOT_FOUND;
the other users' changes are stored. Kafka's ZooKeeper mode takes this
request only on the controller; here any broker stores it (the write is
ZooKeeper's either way), so clients that pick the controller and those
that pick any broker both succeed.
"""

from __future__ import annotations

from collections import Counter

from pybroker.acl import Operation
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.messages.alter_user_scram_credentials_response import (
    AlterUserScramCredentialsResponse,
    AlterUserScramCredentialsResult,
)
from pybroker.protocol.messages.describe_user_scram_credentials_response import (
    CredentialInfo,
    DescribeUserScramCredentialsResponse,
    DescribeUserScramCredentialsResult,
)
from pybroker.protocol.registry import ApiKey

from ..cluster.users import credential_of
from ..sasl.scram import (
    MAX_ITERATIONS,
    MECHANISM_TYPES,
    MIN_ITERATIONS,
    TYPE_OF,
    credential_from_salted,
    encode_credential,
)
from . import Hold, handles

EMPTY_USER = "Username must not be empty"
UNKNOWN_MECHANISM = "Unknown SCRAM mechanism"


def _infos(configs: dict[str, str]) -> list[CredentialInfo]:
    infos = []
    for name, code in TYPE_OF.items():
        credential = credential_of(configs, name)
        if credential is not None:
            infos.append(CredentialInfo(mechanism=code, iterations=credential.iterations))
    return infos


@handles(ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS, 0, 0)
def describe_user_scram_credentials(ctx, req, *, users, authorizer):
    if authorizer is not None and not authorizer.cluster(ctx, Operation.DESCRIBE):
        return DescribeUserScramCredentialsResponse(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, results=[])
    stored = users.all()
    results: list[DescribeUserScramCredentialsResult] = []
    if not req.users:
        for user in sorted(stored):
            infos = _infos(stored[user])
            if infos:
                results.append(DescribeUserScramCredentialsResult(user=user, error_code=0, credential_infos=infos))
        return DescribeUserScramCredentialsResponse(error_code=0, results=results)
    names = [u.name for u in req.users]
    counts = Counter(names)
    for name in dict.fromkeys(names):
        code, message, infos = ErrorCode.NONE, None, []
        if not name:
            code, message = ErrorCode.RESOURCE_NOT_FOUND, EMPTY_USER
        elif counts[name] > 1:
            code = ErrorCode.DUPLICATE_RESOURCE
            message = f"Cannot describe SCRAM credentials for the same user twice in a single request: {name}"
        else:
            infos = _infos(stored.get(name, {}))
            if not infos:
                code = ErrorCode.RESOURCE_NOT_FOUND
                message = f"Attempt to describe a user credential that does not exist: {name}"
        results.append(DescribeUserScramCredentialsResult(
            user=name, error_code=code, error_message=message, credential_infos=infos))
    return DescribeUserScramCredentialsResponse(error_code=0, results=results)


def _illegal(name: str, mechanism: int, iterations: int | None) -> tuple[int, str] | None:
    if not name:
        return ErrorCode.UNACCEPTABLE_CREDENTIAL, EMPTY_USER
    if mechanism not in MECHANISM_TYPES:
        return ErrorCode.UNSUPPORTED_SASL_MECHANISM, UNKNOWN_MECHANISM
    if iterations is not None and iterations < MIN_ITERATIONS:
        return ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too few iterations"
    if iterations is not None and iterations > MAX_ITERATIONS:
        return ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too many iterations"
    return None


@handles(ApiKey.ALTER_USER_SCRAM_CREDENTIALS, 0, 0)
def alter_user_scram_credentials(ctx, req, *, users, authorizer):
    if authorizer is not None and not authorizer.cluster(ctx, Operation.ALTER):
        return AlterUserScramCredentialsResponse(results=[
            AlterUserScramCredentialsResult(user=name, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
            for name in dict.fromkeys(c.name for c in (*req.upsertions, *req.deletions))
        ])
    failed: dict[str, tuple[int, str]] = {}
    for d in req.deletions:
        problem = _illegal(d.name, d.mechanism, None)
        if problem:
            failed[d.name] = problem
    for u in req.upsertions:
        problem = _illegal(u.name, u.mechanism, u.iterations)
        if problem:
            failed[u.name] = problem
    pairs = Counter((c.name, c.mechanism) for c in (*req.upsertions, *req.deletions) if c.name not in failed)
    for (name, _), n in pairs.items():
        if n > 1 and name not in failed:
            failed[name] = (ErrorCode.DUPLICATE_RESOURCE, "A user credential cannot be altered twice in the same request")
    changed: dict[str, dict[str, str]] = {}
    for d in req.deletions:
        if d.name in failed:
            continue
        configs = changed.setdefault(d.name, users.configs(d.name))
        if configs.pop(MECHANISM_TYPES[d.mechanism], None) is None:
            failed[d.name] = (ErrorCode.RESOURCE_NOT_FOUND, "Attempt to delete a user credential that does not exist")
    for u in req.upsertions:
        if u.name in failed:
            continue
        mechanism = MECHANISM_TYPES[u.mechanism]
        credential = credential_from_salted(mechanism, bytes(u.salt), bytes(u.salted_password), u.iterations)
        changed.setdefault(u.name, users.configs(u.name))[mechanism] = encode_credential(credential)
    changes = {name: configs for name, configs in changed.items() if name not in failed}
    # Kafka answers the refused users first, then the stored ones.
    results = [AlterUserScramCredentialsResult(user=name, error_code=code, error_message=message)
               for name, (code, message) in failed.items()]

    async def store():
        code, message = ErrorCode.NONE, None
        try:
            await users.set_many(changes)
        except KafkaError as exc:
            code, message = exc.code, exc.message
        results.extend(AlterUserScramCredentialsResult(user=name, error_code=code, error_message=message)
                       for name in changes)
        return AlterUserScramCredentialsResponse(results=results)

    return Hold(store)
