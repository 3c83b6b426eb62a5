"""An identity provider for the OAUTHBEARER tests: signing keys, their
JWKS, signed and unsigned JWTs, made with ``cryptography`` by each run."""

from __future__ import annotations

import base64
import json
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
_CURVES = {"ES256": (ec.SECP256R1, "P-256"), "ES384": (ec.SECP384R1, "P-384"), "ES512": (ec.SECP521R1, "P-521")}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint(n: int, size: int | None = None) -> str:
    return b64(n.to_bytes(size or (n.bit_length() + 7) // 8, "big"))


class SigningKey:
    def __init__(self, kid: str, alg: str):
        self.kid, self.alg = kid, alg
        if alg.startswith("ES"):
            self.private = ec.generate_private_key(_CURVES[alg][0]())
        else:
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict:
        numbers = self.private.public_key().public_numbers()
        if self.alg.startswith("ES"):
            size = (self.private.curve.key_size + 7) // 8
            return {"kty": "EC", "kid": self.kid, "use": "sig", "crv": _CURVES[self.alg][1],
                    "x": _uint(numbers.x, size), "y": _uint(numbers.y, size)}
        return {"kty": "RSA", "kid": self.kid, "use": "sig", "n": _uint(numbers.n), "e": _uint(numbers.e)}

    def sign(self, data: bytes) -> bytes:
        digest = _HASHES[self.alg[2:]]()
        if self.alg.startswith("RS"):
            return self.private.sign(data, padding.PKCS1v15(), digest)
        if self.alg.startswith("PS"):
            return self.private.sign(data, padding.PSS(padding.MGF1(digest), digest.digest_size), digest)
        r, s = decode_dss_signature(self.private.sign(data, ec.ECDSA(digest)))
        size = (self.private.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def jwks(*keys: SigningKey) -> str:
    return json.dumps({"keys": [k.jwk() for k in keys]})


def claims(sub: str = "alice", lifetime_s: float = 300, **more) -> dict:
    now = time.time()
    return {"sub": sub, "iat": int(now), "exp": int(now + lifetime_s), **more}


def signed(key: SigningKey, body: dict, header: dict | None = None) -> str:
    head = {"alg": key.alg, "typ": "JWT", "kid": key.kid, **(header or {})}
    signing_input = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(body).encode())}"
    return f"{signing_input}.{b64(key.sign(signing_input.encode()))}"


def unsecured(body: dict) -> str:
    return f"{b64(json.dumps({'alg': 'none'}).encode())}.{b64(json.dumps(body).encode())}."


def client_message(token: str, authzid: str = "", **extensions: str) -> bytes:
    pairs = "".join(f"{k}={v}\x01" for k, v in extensions.items())
    return f"n,{'a=' + authzid if authzid else ''},\x01auth=Bearer {token}\x01{pairs}\x01".encode()
