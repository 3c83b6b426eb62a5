"""Which SASL mechanisms a listener enables, and their users, from Kafka's
properties: ``sasl.enabled.mechanisms`` (or the listener's own
``listener.name.<listener>.sasl.enabled.mechanisms``) and, per mechanism,
``listener.name.<listener>.<mechanism>.sasl.jaas.config`` or else
``sasl.jaas.config`` (Kafka's lookup order).

OAUTHBEARER takes its validator from
``listener.name.<listener>.oauthbearer.sasl.server.callback.handler.class``:
none is Kafka's unsecured one (JAAS options), OAuthBearerValidatorCallbackHandler
the signed one, whose ``sasl.oauthbearer.*`` settings are read, as Kafka
reads them, from ``listener.name.<listener>.oauthbearer.<key>``, then
``listener.name.<listener>.<key>``, then ``<key>``. ``connections.max.reauth.ms``
is read the same way, per mechanism."""

from __future__ import annotations

from urllib.parse import urlparse

from pybroker.storage.configdef import ConfigKey, ConfigValueError, at_least

from . import oauthbearer, signed
from .jaas import JaasError, parse_jaas
from .jwks import JsonWebKeys
from .mechanisms import SUPPORTED_MECHANISMS
from .plain import plain_users
from .scram import HASHES
from .unsecured import UnsecuredValidator

# Kafka's keys for signed OAUTHBEARER tokens (SaslConfigs), and KIP-368's.
OAUTHBEARER_PROPERTIES = (
    ConfigKey("sasl.oauthbearer.jwks.endpoint.url", "STRING", None, None,
              "JWKS of the identity provider: an http(s) URL or a file: URL (signed OAUTHBEARER tokens)"),
    ConfigKey("sasl.oauthbearer.jwks.endpoint.refresh.ms", "LONG", 3_600_000, at_least(1),
              "how often an http(s) JWKS is fetched again"),
    ConfigKey("sasl.oauthbearer.jwks.endpoint.retry.backoff.ms", "LONG", 100, at_least(0),
              "first wait between failed JWKS fetches"),
    ConfigKey("sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms", "LONG", 10_000, at_least(0),
              "longest wait between failed JWKS fetches"),
    ConfigKey("sasl.oauthbearer.expected.audience", "LIST", None, None,
              "audiences a token may be for (none: a token naming one is refused)"),
    ConfigKey("sasl.oauthbearer.expected.issuer", "STRING", None, None, "the issuer a token must name"),
    ConfigKey("sasl.oauthbearer.sub.claim.name", "STRING", "sub", None, "the claim naming the principal"),
    ConfigKey("sasl.oauthbearer.scope.claim.name", "STRING", "scope", None, "the claim holding the scope"),
    ConfigKey("sasl.oauthbearer.clock.skew.seconds", "INT", 30, None, "leeway for exp and nbf"),
    ConfigKey("connections.max.reauth.ms", "LONG", 0, None,
              "a SASL session lasts at most this long, then must re-authenticate (0: only the credential's expiry)"),
)
_KEYS = {k.name: k for k in OAUTHBEARER_PROPERTIES}


def listener_mechanisms(listener: str, values, prefixed: dict[str, str]) -> dict[str, object]:
    """{mechanism: its settings} (PLAIN: its users; SCRAM: None, the
    credentials are the cluster's); ValueError naming the property at
    fault. The listener-prefixed keys used are taken out of ``prefixed``."""
    prefix = f"listener.name.{listener.lower()}."
    own = prefixed.pop(prefix + "sasl.enabled.mechanisms", None)
    enabled = [m.strip() for m in own.split(",") if m.strip()] if own is not None else values["sasl.enabled.mechanisms"]
    if not enabled:
        raise ValueError(f"listener {listener}: sasl.enabled.mechanisms is empty")
    unsupported = [m for m in enabled if m not in SUPPORTED_MECHANISMS]
    if unsupported:
        raise ValueError(
            f"listener {listener}: SASL mechanism {', '.join(unsupported)} is not supported"
            f" (sasl.enabled.mechanisms may name {', '.join(SUPPORTED_MECHANISMS)})"
        )
    found = {}
    for mechanism in enabled:
        key = f"{prefix}{mechanism.lower()}.sasl.jaas.config"
        text = prefixed.pop(key, None) or values["sasl.jaas.config"]
        if mechanism in HASHES:
            # ScramLoginModule's options only serve the broker's own
            # logins: the users are the stored credentials.
            found[mechanism] = None
            if text:
                try:
                    parse_jaas(text)
                except JaasError as exc:
                    raise ValueError(f"listener {listener}: {exc}") from None
            continue
        if not text:
            raise ValueError(f"listener {listener}: no JAAS configuration for {mechanism}: set {key} or sasl.jaas.config")
        try:
            if mechanism == oauthbearer.MECHANISM:
                found[mechanism] = _oauthbearer(listener, text, values, prefixed)
            else:
                found[mechanism] = plain_users(text)
        except ValueError as exc:  # JaasError, ConfigValueError, a bad option
            raise ValueError(f"listener {listener}: {exc}") from None
    return found


def _value(listener: str, mechanism: str | None, name: str, values, prefixed: dict[str, str]):
    """``name``'s value for a listener (and mechanism), in Kafka's lookup order."""
    prefix = f"listener.name.{listener.lower()}."
    for key in ((f"{prefix}{mechanism.lower()}.{name}",) if mechanism else ()) + (prefix + name,):
        if key in prefixed:
            return _KEYS[name].parse(prefixed[key])
    return values[name]


def _take(listener: str, mechanisms, prefixed: dict[str, str]) -> None:
    """The listener's keys read by _value leave the ignored ones."""
    prefix = f"listener.name.{listener.lower()}."
    for name in _KEYS:
        prefixed.pop(prefix + name, None)
        for mechanism in mechanisms:
            prefixed.pop(f"{prefix}{mechanism.lower()}.{name}", None)


def _oauthbearer(listener: str, jaas_text: str, values, prefixed: dict[str, str]):
    """OAUTHBEARER's validator: Kafka's unsecured one, or its signed one."""
    modules = parse_jaas(jaas_text)
    options = next((m for m in modules if m.name == oauthbearer.LOGIN_MODULE), modules[0]).options
    handler_key = f"listener.name.{listener.lower()}.oauthbearer.sasl.server.callback.handler.class"
    handler = (prefixed.pop(handler_key, None) or "").strip()
    if not handler:
        return UnsecuredValidator(options)
    if handler not in (signed.HANDLER, signed.OLD_HANDLER):
        raise ValueError(f"{handler_key}: {handler} is not served (Kafka's {signed.HANDLER} is, or none for"
                         " unsecured tokens)")

    def get(name):
        return _value(listener, oauthbearer.MECHANISM, name, values, prefixed)

    url = (get("sasl.oauthbearer.jwks.endpoint.url") or "").strip()
    if not url:
        raise ValueError("The OAuth configuration option sasl.oauthbearer.jwks.endpoint.url value must be non-null")
    scheme = urlparse(url).scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise ValueError(f"The OAuth configuration option sasl.oauthbearer.jwks.endpoint.url contains a URL ({url})"
                         f' that contains an invalid protocol ({scheme}); only "http", "https", and "file" protocol'
                         " are supported")
    keys = JsonWebKeys(url, get("sasl.oauthbearer.jwks.endpoint.refresh.ms"),
                       get("sasl.oauthbearer.jwks.endpoint.retry.backoff.ms"),
                       get("sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms"))
    issuer = (get("sasl.oauthbearer.expected.issuer") or "").strip() or None
    return signed.SignedValidator(
        keys, tuple(get("sasl.oauthbearer.expected.audience") or ()), issuer,
        (get("sasl.oauthbearer.sub.claim.name") or "").strip() or "sub",
        (get("sasl.oauthbearer.scope.claim.name") or "").strip() or "scope",
        get("sasl.oauthbearer.clock.skew.seconds"))


def max_reauth_ms(listener: str, mechanisms, values, prefixed: dict[str, str]) -> dict[str, int]:
    """connections.max.reauth.ms of each of a listener's mechanisms; the
    listener's ``sasl.oauthbearer.*`` and reauth keys then leave ``prefixed``."""
    try:
        found = {m: _value(listener, m, "connections.max.reauth.ms", values, prefixed) for m in mechanisms}
    except ConfigValueError as exc:
        raise ValueError(f"listener {listener}: {exc}") from None
    _take(listener, mechanisms, prefixed)
    return found
