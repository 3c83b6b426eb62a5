"""TLS for SSL listeners: the server's ``ssl.SSLContext`` from Kafka's
``ssl.*`` properties, as Kafka reads PEM stores (KIP-651).

- The keystore is PEM (``ssl.keystore.type=PEM``): a file with the private
  key and the certificate chain (``ssl.keystore.location``), or both inline
  (``ssl.keystore.certificate.chain`` and ``ssl.keystore.key``); an
  encrypted key is opened with ``ssl.key.password``. JKS and PKCS12 stores
  are refused with a message saying to convert them.
- Client certificates (``ssl.client.auth``: required, requested, none) are
  checked against the PEM truststore (``ssl.truststore.location`` or
  ``ssl.truststore.certificates``).
- ``ssl.enabled.protocols`` bounds the TLS versions (1.2 and 1.3);
  ``ssl.cipher.suites`` names TLS 1.2 suites in OpenSSL's spelling.

Every problem is a message naming the property, collected with the other
configuration problems: a broker that cannot serve TLS does not start.
"""

from __future__ import annotations

import os
import ssl
import tempfile

VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
CLIENT_AUTH = {"required": ssl.CERT_REQUIRED, "requested": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}


class TlsConfigError(ValueError):
    pass


def server_context(v) -> ssl.SSLContext:
    """The context of every SSL listener, from the parsed properties ``v``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    enabled = [VERSIONS[name] for name in v["ssl.enabled.protocols"]]
    if not enabled:
        raise TlsConfigError("ssl.enabled.protocols: at least one of TLSv1.2, TLSv1.3 is needed")
    ctx.minimum_version, ctx.maximum_version = min(enabled), max(enabled)
    if v["ssl.cipher.suites"]:
        try:
            ctx.set_ciphers(":".join(v["ssl.cipher.suites"]))
        except ssl.SSLError:
            raise TlsConfigError(
                f"ssl.cipher.suites: no usable cipher suite in {','.join(v['ssl.cipher.suites'])}"
                " (OpenSSL's names, e.g. ECDHE-RSA-AES256-GCM-SHA384)"
            ) from None
    _load_keystore(ctx, v)
    ctx.verify_mode = CLIENT_AUTH[v["ssl.client.auth"]]
    if ctx.verify_mode != ssl.CERT_NONE:
        _load_truststore(ctx, v)
    return ctx


def _load_keystore(ctx: ssl.SSLContext, v) -> None:
    location, chain, key = v["ssl.keystore.location"], v["ssl.keystore.certificate.chain"], v["ssl.keystore.key"]
    if not (location or chain or key):
        raise TlsConfigError(
            "an SSL listener needs a keystore: ssl.keystore.location, or ssl.keystore.certificate.chain"
            " and ssl.keystore.key"
        )
    if v["ssl.keystore.type"] != "PEM":
        raise TlsConfigError(
            f"ssl.keystore.type {v['ssl.keystore.type']}: pybroker reads PEM keystores only"
            " (set ssl.keystore.type=PEM; convert a JKS or PKCS12 store with keytool and openssl)"
        )
    if location and (chain or key):
        raise TlsConfigError("ssl.keystore.location and ssl.keystore.certificate.chain/key cannot both be set")
    password = v["ssl.key.password"]
    if location:
        try:
            ctx.load_cert_chain(location, password=password)
        except FileNotFoundError:
            raise TlsConfigError(f"ssl.keystore.location {location}: no such file") from None
        except (ssl.SSLError, OSError) as exc:
            raise TlsConfigError(
                f"ssl.keystore.location {location}: not a PEM private key and certificate chain"
                f" (or a wrong ssl.key.password): {exc}"
            ) from None
        return
    if not (chain and key):
        raise TlsConfigError("ssl.keystore.certificate.chain and ssl.keystore.key go together")
    # Python's ssl loads a chain from files only: the inline PEM goes
    # through a private temporary file, removed at once.
    fd, path = tempfile.mkstemp(prefix="pybroker-keystore-", suffix=".pem")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(key.strip() + "\n" + chain.strip() + "\n")
        ctx.load_cert_chain(path, password=password)
    except (ssl.SSLError, OSError) as exc:
        raise TlsConfigError(
            f"ssl.keystore.certificate.chain/ssl.keystore.key: not a PEM certificate chain and private key: {exc}"
        ) from None
    finally:
        os.unlink(path)


def _load_truststore(ctx: ssl.SSLContext, v) -> None:
    location, inline = v["ssl.truststore.location"], v["ssl.truststore.certificates"]
    if not (location or inline):
        raise TlsConfigError(
            f"ssl.client.auth={v['ssl.client.auth']} needs a truststore: ssl.truststore.location or"
            " ssl.truststore.certificates"
        )
    if v["ssl.truststore.type"] != "PEM":
        raise TlsConfigError(
            f"ssl.truststore.type {v['ssl.truststore.type']}: pybroker reads PEM truststores only"
            " (set ssl.truststore.type=PEM)"
        )
    try:
        if location:
            ctx.load_verify_locations(cafile=location)
        else:
            ctx.load_verify_locations(cadata=inline)
    except FileNotFoundError:
        raise TlsConfigError(f"ssl.truststore.location {location}: no such file") from None
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise TlsConfigError(f"ssl.truststore: not PEM certificates: {exc}") from None


def subject_name(der: bytes) -> str:
    """A certificate's subject as RFC 2253 writes it, most specific first
    (``CN=alice,OU=eng,O=Example,C=US``): the name Kafka maps to a
    principal (X500Principal.getName)."""
    from cryptography import x509

    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def certificate_principal(der: bytes | None, rules) -> str:
    """The principal of an SSL connection (DefaultKafkaPrincipalBuilder):
    ``User:`` and the subject as ``ssl.principal.mapping.rules`` map it;
    User:ANONYMOUS without a client certificate. NoMatchingRule when no
    rule applies."""
    from .principal_rules import principal_name

    if not der:
        return "User:ANONYMOUS"
    return "User:" + principal_name(rules, subject_name(der))


def listener_contexts(listeners, values, prefixed: dict[str, str], keys) -> tuple[dict[str, ssl.SSLContext], list[str]]:
    """{listener: its context} for every SSL and SASL_SSL listener, and the
    problems found. A listener's own ``listener.name.<l>.ssl.*`` keys
    override the global ones (taken out of ``prefixed``); ``keys`` parses
    them (BROKER_PROPERTIES). As Kafka since KIP-684, a SASL_SSL listener
    asks for no client certificate unless its own ssl.client.auth says so:
    SASL names its clients."""
    contexts, problems = {}, []
    for lst in listeners:
        if lst.protocol not in ("SSL", "SASL_SSL"):
            continue
        prefix = f"listener.name.{lst.name.lower()}."
        own = {k[len(prefix):]: prefixed.pop(k) for k in sorted(prefixed) if k.startswith(prefix + "ssl.")}
        merged = dict(values)
        if lst.protocol == "SASL_SSL":
            merged["ssl.client.auth"] = "none"
        for key, raw in own.items():
            if key not in keys:
                problems.append(f"unknown property {prefix}{key!r}")
                continue
            try:
                merged[key] = keys[key].parse(raw)
            except ValueError as exc:
                problems.append(f"{prefix}{key}: {exc}")
        try:
            contexts[lst.name] = server_context(merged)
        except TlsConfigError as exc:
            problems.append(f"listener {lst.name}: {exc}" if own else str(exc))
    return contexts, problems
