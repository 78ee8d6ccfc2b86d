"""An authentication scheme bridge cannot answer is an authentication error that names it."""

from __future__ import annotations

import httpx
import pytest

from bridge.config import DeviceConfig
from bridge.errors import AuthError
from bridge.http import DeviceHttp, make_client
from bridge.metrics import Metrics

pytestmark = pytest.mark.anyio


class Config(DeviceConfig):
    driver: str = "test"


@pytest.mark.parametrize("auth", ["auto", "digest"])
async def test_digest_auth_int_only_is_an_auth_error(auth: str) -> None:
    requests = 0

    async def device(request: httpx.Request) -> httpx.Response:
        nonlocal requests
        requests += 1
        challenge = 'Digest realm="HTTPAPI", qop="auth-int", nonce="abc", opaque="xyz"'
        return httpx.Response(401, headers={"www-authenticate": challenge})

    config = Config(id="gate", url="http://192.0.2.1", username="admin", password="pw", auth=auth)
    http = DeviceHttp(
        make_client(config, transport=httpx.MockTransport(device)),
        device="gate",
        driver="test",
        metrics=Metrics(),
    )
    with pytest.raises(AuthError, match="qop=auth-int only") as caught:
        await http.get_json("/api/system/info")
    assert caught.value.device == "gate"
    assert "pw" not in str(caught.value)
    assert requests == 1  # nothing was sent with the password
