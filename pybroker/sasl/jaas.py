"""Kafka's JAAS configuration text, as ``sasl.jaas.config`` carries it:

    org.apache.kafka.common.security.plain.PlainLoginModule required
        username="admin" password="admin-secret" user_alice="alice-secret";

One or more login modules, each a class name, a control flag (required,
requisite, sufficient, optional), options ``name=value`` (a value quoted
with double quotes, backslash escapes inside, or a bare word) and a
closing ``;``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FLAGS = ("required", "requisite", "sufficient", "optional")
_TOKEN = re.compile(r'\s*(?:(;)|("(?:[^"\\]|\\.)*")|([^\s=;"]+)|(=))', re.DOTALL)


class JaasError(ValueError):
    pass


@dataclass
class LoginModule:
    name: str
    flag: str
    options: dict[str, str] = field(default_factory=dict)


def _tokens(text: str):
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos:].strip():
                raise JaasError(f"sasl.jaas.config: cannot read {text[pos:pos + 20]!r}")
            return
        pos = m.end()
        semi, quoted, word, equals = m.groups()
        if semi:
            yield ";", None
        elif quoted:
            yield "value", re.sub(r"\\(.)", r"\1", quoted[1:-1])
        elif equals:
            yield "=", None
        elif word:
            yield "word", word


def parse_jaas(text: str) -> list[LoginModule]:
    modules: list[LoginModule] = []
    tokens = list(_tokens(text))
    i = 0
    while i < len(tokens):
        kind, name = tokens[i]
        if kind != "word":
            raise JaasError("sasl.jaas.config: a login module's class name expected")
        if i + 1 >= len(tokens) or tokens[i + 1][0] != "word" or tokens[i + 1][1].lower() not in FLAGS:
            raise JaasError(f"sasl.jaas.config: {name} needs a control flag ({', '.join(FLAGS)})")
        module = LoginModule(name, tokens[i + 1][1].lower())
        i += 2
        while i < len(tokens) and tokens[i][0] != ";":
            if i + 2 >= len(tokens) or tokens[i][0] != "word" or tokens[i + 1][0] != "=" \
                    or tokens[i + 2][0] not in ("value", "word"):
                raise JaasError(f"sasl.jaas.config: option name=value expected in {name}'s options")
            module.options[tokens[i][1]] = tokens[i + 2][1]
            i += 3
        if i >= len(tokens):
            raise JaasError(f"sasl.jaas.config: {name}'s options must end with ';'")
        i += 1
        modules.append(module)
    if not modules:
        raise JaasError("sasl.jaas.config: no login module")
    return modules
