"""``pybroker scram-credentials list|add|delete``: SCRAM users through
Describe/AlterUserScramCredentials (KIP-554), as ``kafka-configs.sh
--entity-type users --alter --add-config 'SCRAM-SHA-512=[password=...]'``
makes them. The password never leaves this process: the salt is made
here and only the salted password is sent, as Kafka's admin client does."""

from __future__ import annotations

import secrets

from pybroker.protocol.messages.alter_user_scram_credentials_request import (
    AlterUserScramCredentialsRequest,
    ScramCredentialDeletion,
    ScramCredentialUpsertion,
)
from pybroker.protocol.messages.describe_user_scram_credentials_request import (
    DescribeUserScramCredentialsRequest,
    UserName,
)
from pybroker.sasl.scram import MECHANISM_TYPES, TYPE_OF, salted_password

from .client import AdminError, Client, check
from .tables import out, out_json, table


def describe(client: Client, users: list[str] | None) -> list[dict]:
    request = DescribeUserScramCredentialsRequest(users=[UserName(name=u) for u in users] if users else None)
    response, _ = client.any().call(request, 0, 0)
    check(response.error_code, response.error_message, "DescribeUserScramCredentials")
    found = []
    for r in response.results:
        check(r.error_code, r.error_message, r.user)
        found.append({"user": r.user, "credentials": [
            {"mechanism": MECHANISM_TYPES.get(i.mechanism, str(i.mechanism)), "iterations": i.iterations}
            for i in r.credential_infos]})
    return found


def list_command(client: Client, args) -> int:
    found = describe(client, args.user)
    if args.json:
        out_json(found)
        return 0
    out(table(["USER", "MECHANISM", "ITERATIONS"],
              [[u["user"], c["mechanism"], c["iterations"]] for u in found for c in u["credentials"]]))
    return 0


def _mechanism(name: str) -> int:
    code = TYPE_OF.get(name.upper())
    if code is None:
        raise AdminError("UNSUPPORTED_SASL_MECHANISM", f"{name} is not one of {', '.join(TYPE_OF)}")
    return code


def _alter(client: Client, request: AlterUserScramCredentialsRequest) -> None:
    # Kafka's ZooKeeper-mode brokers take this on the controller only.
    response, _ = client.controller().call(request, 0, 0)
    for r in response.results:
        check(r.error_code, r.error_message, r.user)


def add_command(client: Client, args) -> int:
    code = _mechanism(args.mechanism)
    salt = secrets.token_bytes(32)
    salted = salted_password(MECHANISM_TYPES[code], args.password.encode(), salt, args.iterations)
    upsertion = ScramCredentialUpsertion(name=args.user, mechanism=code, iterations=args.iterations, salt=salt,
                                         salted_password=salted)
    _alter(client, AlterUserScramCredentialsRequest(upsertions=[upsertion], deletions=[]))
    out(f"Set the {MECHANISM_TYPES[code]} credential of user {args.user}.")
    return 0


def delete_command(client: Client, args) -> int:
    deletion = ScramCredentialDeletion(name=args.user, mechanism=_mechanism(args.mechanism))
    _alter(client, AlterUserScramCredentialsRequest(upsertions=[], deletions=[deletion]))
    out(f"Deleted the {args.mechanism.upper()} credential of user {args.user}.")
    return 0
