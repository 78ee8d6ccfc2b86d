"""An authentication challenge bridge cannot answer is an authentication error that names it."""

from __future__ import annotations

from dataclasses import replace

import anyio
import pytest

from bridge.config import DeviceConfig
from bridge.errors import AuthError
from bridge.http import DeviceHttp
from bridge.metrics import Metrics
from bridge.simulators.server import Request, Response, serve
from bridge.simulators.two_n import TwoNSimulator

pytestmark = pytest.mark.anyio


class Config(DeviceConfig):
    driver: str = "test"


@pytest.mark.parametrize("auth", ["auto", "digest"])
@pytest.mark.parametrize(
    "challenge",
    [
        pytest.param('qop="auth-conf", nonce="abc"', id="qop-auth-conf"),
        pytest.param('qop="auth", nonce="abc", algorithm=MD6', id="unknown-algorithm"),
        pytest.param('qop="auth", nonce=""', id="empty-nonce"),
    ],
)
async def test_an_unanswerable_digest_challenge_is_an_auth_error(auth: str, challenge: str) -> None:
    requests: list[Request] = []

    async def device(request: Request) -> Response:
        requests.append(request)
        headers = [("www-authenticate", f'Digest realm="HTTPAPI", {challenge}, opaque="xyz"')]
        return Response(401, b"", headers=headers)

    async with anyio.create_task_group() as tg:
        port = await tg.start(serve, device)
        config = Config(
            id="gate", url=f"http://127.0.0.1:{port}", username="admin", password="pw", auth=auth
        )
        async with DeviceHttp(config, metrics=Metrics()) as http:
            with pytest.raises(
                AuthError, match="cannot answer the device's Digest challenge"
            ) as caught:
                await http.get_json("/api/system/info")
        tg.cancel_scope.cancel()
    assert caught.value.device == "gate"
    assert "pw" not in str(caught.value)
    assert len(requests) == 1  # nothing was sent with credentials
    assert "authorization" not in requests[0].headers


@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        ("auth,auth-int", "auth"),
        ("auth-int,auth", "auth"),
        ("auth-int", "auth-int"),
        ("auth", "auth"),
    ],
)
async def test_digest_answers_qop_auth_where_offered(offered: str, answered: str) -> None:
    """curl, requests and httpx answer ``auth`` when a device offers both; aiohttp alone would
    pick ``auth-int`` (``DigestAuth`` reads its private challenge: this catches a change)."""
    authorizations: list[str] = []

    async def device(request: Request) -> Response:
        if "authorization" in request.headers:
            authorizations.append(request.headers["authorization"])
            return Response(200, b"{}")
        challenge = f'Digest realm="HTTPAPI", qop="{offered}", nonce="abc", opaque="xyz"'
        return Response(401, b"", headers=[("www-authenticate", challenge)])

    async with anyio.create_task_group() as tg:
        port = await tg.start(serve, device)
        for auth in ("auto", "digest"):
            config = Config(
                id="gate",
                url=f"http://127.0.0.1:{port}",
                username="admin",
                password="pw",
                auth=auth,
            )
            async with DeviceHttp(config, metrics=Metrics()) as http:
                assert await http.get_json("/api/system/info") == {}
        tg.cancel_scope.cancel()
    assert len(authorizations) == 2
    for authorization in authorizations:
        assert authorization.startswith("Digest ")
        assert f"qop={answered}," in authorization + ","


def test_a_colon_in_the_user_name_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="username: must not contain ':'"):
        Config(id="gate", url="http://192.0.2.1", username="ad:min", password="pw")


async def test_digest_offered_beside_basic_in_one_header_never_sends_the_password() -> None:
    """RFC 9110 lets one header carry several challenges; Digest wins wherever it is."""
    authorizations: list[str] = []

    async def device(request: Request) -> Response:
        if "authorization" in request.headers:
            authorizations.append(request.headers["authorization"])
        challenge = 'Basic realm="r", Digest realm="r", nonce="abc", qop="auth"'
        return Response(401, b"", headers=[("www-authenticate", challenge)])

    async with anyio.create_task_group() as tg:
        port = await tg.start(serve, device)
        config = Config(id="gate", url=f"http://127.0.0.1:{port}", username="u", password="pw")
        async with DeviceHttp(config, metrics=Metrics()) as http:
            with pytest.raises(AuthError):
                await http.get_json("/api/system/info")
        tg.cancel_scope.cancel()
    assert not [a for a in authorizations if a.lower().startswith("basic")]


async def test_the_scheme_is_learnt_per_service_below_the_url_path() -> None:
    """``url: http://host/prefix``: the service of ``/prefix/api/log/caps`` is ``log``."""
    sim = TwoNSimulator(username="api", password="pw", service_auth={"/api/log/": "basic"})
    async with anyio.create_task_group() as tg:
        await tg.start(sim.serve)

        async def rewrite(request: Request) -> Response:  # a reverse proxy under /prefix
            # The digest's uri is what the client sent (the target): only the route is moved.
            return await sim.handle(replace(request, path=request.path.removeprefix("/prefix")))

        port = await tg.start(serve, rewrite)
        config = Config(
            id="d", url=f"http://127.0.0.1:{port}/prefix", username="api", password="pw"
        )
        async with DeviceHttp(config, metrics=Metrics()) as http:
            costs = []
            for path in ("/api/system/info", "/api/log/caps", "/api/system/info", "/api/log/caps"):
                before = sim.requests
                await http.get_json(path)
                costs.append(sim.requests - before)
        tg.cancel_scope.cancel()
    assert costs == [2, 2, 1, 1]  # one challenge per service, then credentials at once
