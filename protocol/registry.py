"""API key -> message classes and header versions.

Message modules are imported on first use, so a process that speaks a
handful of APIs does not pay to import all of them.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import NamedTuple

from .errors import UnsupportedVersionError
from .message import Message
from .messages import APIS, ApiKey

__all__ = ["ApiInfo", "ApiKey", "api_info", "request_header_version", "response_header_version"]


class ApiInfo(NamedTuple):
    key: ApiKey
    request: type[Message]
    response: type[Message]
    valid_versions: tuple[int, int]
    flexible_versions: tuple[int, int] | None

    def is_flexible(self, version: int) -> bool:
        flex = self.flexible_versions
        return flex is not None and flex[0] <= version <= flex[1]

    def supports(self, version: int) -> bool:
        return self.valid_versions[0] <= version <= self.valid_versions[1]


def _load(module: str, name: str) -> type[Message]:
    return getattr(importlib.import_module(f"{__package__}.messages.{module}"), name)


@lru_cache(maxsize=None)
def api_info(api_key: int) -> ApiInfo:
    try:
        req_mod, req_name, resp_mod, resp_name, valid, flexible = APIS[api_key]
    except KeyError:
        raise UnsupportedVersionError(f"unknown api key {api_key}") from None
    return ApiInfo(ApiKey(api_key), _load(req_mod, req_name), _load(resp_mod, resp_name), valid, flexible)


def request_header_version(api_key: int, api_version: int) -> int:
    """Header v2 goes with flexible versions, v1 otherwise; v0 only with
    ControlledShutdown v0, the one request that predates the client id."""
    info = api_info(api_key)
    if info.is_flexible(api_version):
        return 2
    if api_key == ApiKey.CONTROLLED_SHUTDOWN and api_version == 0:
        return 0
    return 1


def response_header_version(api_key: int, api_version: int) -> int:
    """Header v1 (with tagged fields) goes with flexible versions, except for
    ApiVersions: a client must be able to read its response before it knows
    which versions the broker speaks, so that header is always v0."""
    if api_key == ApiKey.API_VERSIONS:
        return 0
    return 1 if api_info(api_key).is_flexible(api_version) else 0
