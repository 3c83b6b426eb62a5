"""ssl.principal.mapping.rules with Kafka's syntax and semantics (the
cases of Kafka's SslPrincipalMapperTest, restated)."""

from __future__ import annotations

import pytest

from pybroker.principal_rules import NoMatchingRule, parse_rules, principal_name

RULES = ("RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,"
         "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U,DEFAULT")


@pytest.mark.parametrize(("dn", "name"), [
    ("CN=kafka1,OU=ServiceUsers,O=Org,C=US", "kafka1"),
    ("CN=Duke,OU=JavaSoft,O=Sun Microsystems,L=Palo Alto,ST=CA,C=US", "duke@javasoft"),
    ("OU=JavaSoft,O=Sun Microsystems,C=US,CN=Foo", "FOO"),
    ("OU=nobody", "OU=nobody"),  # DEFAULT: the name itself
])
def test_the_first_rule_that_applies_names_the_user(dn, name):
    assert principal_name(parse_rules(RULES), dn) == name


def test_default_alone_and_unset_are_the_name_itself():
    assert principal_name(parse_rules("DEFAULT"), "CN=a,O=b") == "CN=a,O=b"
    assert principal_name(parse_rules(None), "CN=a,O=b") == "CN=a,O=b"


def test_escaped_slashes_and_literal_group_references():
    rules = parse_rules(r"RULE:^CN=([^,]*)\/x,.*$/$1\/$2/")
    # $2 is beyond the pattern's one group: taken literally, as Kafka does.
    assert principal_name(rules, "CN=a/x,O=b") == "a/$2"


def test_a_name_no_rule_applies_to_is_refused():
    with pytest.raises(NoMatchingRule, match="No rules apply to CN=a"):
        principal_name(parse_rules("RULE:^CN=b$/b/"), "CN=a")


@pytest.mark.parametrize("bad", ["RULE:^CN=(.*?)/$1/Z", "RULE:^CN=(.*$/$1/", "RULE:abc"])
def test_bad_rules_are_named(bad):
    with pytest.raises(ValueError, match="Invalid rule"):
        parse_rules(bad)
