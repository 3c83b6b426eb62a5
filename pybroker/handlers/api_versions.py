"""ApiVersions v0-4 (api key 18).

v0 lists the API ranges; v1 adds throttle time; v3 is flexible and carries
the client's software name and version (checked against Kafka's pattern,
INVALID_REQUEST otherwise) plus feature tags, which we leave empty (see
CLIENTS.md: advertising features changes client behaviour); v4 is v3 with
permission to list features whose min version is 0. A version above 4 is
answered by the server with UNSUPPORTED_VERSION in the v0 layout (KIP-511).

The list is built from the handler registry, so what is advertised is
exactly what is served.
"""

import re

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.api_versions_response import ApiVersion, ApiVersionsResponse
from pybroker.protocol.registry import ApiKey

from . import HANDLERS, handles

SOFTWARE_PATTERN = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?$")


@handles(ApiKey.API_VERSIONS, 0, 4)
def api_versions(ctx, req):
    keys = [ApiVersion(api_key=h.api_key, min_version=h.min_version, max_version=h.max_version) for h in sorted(HANDLERS.values(), key=lambda h: h.api_key)]
    error = ErrorCode.NONE
    if ctx.api_version >= 3 and not (
        SOFTWARE_PATTERN.match(req.client_software_name) and SOFTWARE_PATTERN.match(req.client_software_version)
    ):
        error = ErrorCode.INVALID_REQUEST
    return ApiVersionsResponse(error_code=error, api_keys=keys)
