"""``ssl.principal.mapping.rules``: how a client certificate's subject
becomes a principal's name, with Kafka's syntax and semantics
(SslPrincipalMapper, KIP-371).

Rules are separated by commas and tried in order; the first that applies
names the user. ``DEFAULT`` is the distinguished name itself (RFC 2253,
``CN=alice,OU=eng,O=Example,C=US``). ``RULE:pattern/replacement/`` applies
when the Java-style regex matches the whole name; the replacement takes
``$1``-style groups, a trailing ``L`` or ``U`` lowercases or uppercases
the result. A name no rule applies to fails the connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_RULES = "DEFAULT"
_RULE = r"(DEFAULT)|RULE:((?:\\.|[^\\/])*)/((?:\\.|[^\\/])*)/([LU]?).*?|(.*?)"
_SPLITTER = re.compile(r"\s*(" + _RULE + r")\s*(?:,\s*|$)")
_PARSER = re.compile(_RULE)


class NoMatchingRule(ValueError):
    pass


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern | None  # None: DEFAULT
    replacement: str = ""
    case: str = ""

    def apply(self, name: str) -> str | None:
        if self.pattern is None:
            return name
        m = self.pattern.fullmatch(name)
        if m is None:
            return None
        result = self.pattern.sub(lambda found: _expand(self.replacement, found), name)
        return result.lower() if self.case == "L" else result.upper() if self.case == "U" else result


def _expand(replacement: str, m: re.Match) -> str:
    """Java's Matcher replacement: ``\\x`` is a literal x, ``$n`` a group;
    a group number beyond the pattern's loses digits until it fits (Kafka
    takes ``$12`` as ``$1`` then "2"), and one that never fits is literal."""
    groups = m.re.groups
    out, i = [], 0
    while i < len(replacement):
        ch = replacement[i]
        if ch == "\\" and i + 1 < len(replacement):
            out.append(replacement[i + 1])
            i += 2
        elif ch == "$" and i + 1 < len(replacement) and replacement[i + 1].isdigit():
            j = i + 1
            while j < len(replacement) and replacement[j].isdigit():
                j += 1
            digits = replacement[i + 1 : j]
            while len(digits) > 1 and int(digits) > groups:
                digits = digits[:-1]
            if int(digits) > groups:
                out.append("$" + digits)
            else:
                out.append(m.group(int(digits)) or "")
            i += 1 + len(digits)
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def parse_rules(text: str | None) -> list[Rule]:
    """ValueError naming the rule at fault."""
    rules = []
    for m in _SPLITTER.finditer((text if text is not None else DEFAULT_RULES).strip()):
        raw = m.group(1)
        parsed = _PARSER.match(raw)
        if parsed is None or parsed.end() != len(raw):
            rest = raw[parsed.end():] if parsed is not None else raw
            raise ValueError(f"Invalid rule: `{raw}`, unmatched substring: `{rest}`")
        if parsed.group(1):
            rules.append(Rule(None))
        elif parsed.group(2) is not None:
            try:
                pattern = re.compile(parsed.group(2))
            except re.error as exc:
                raise ValueError(f"Invalid rule: `{raw}`: {exc}") from None
            rules.append(Rule(pattern, parsed.group(3), parsed.group(4)))
    return rules


def principal_name(rules: list[Rule], distinguished_name: str) -> str:
    for rule in rules:
        name = rule.apply(distinguished_name)
        if name is not None:
            return name
    raise NoMatchingRule(f"No rules apply to {distinguished_name}")
