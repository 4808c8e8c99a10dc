"""Authentication behaviour of the emulator, over real sockets."""

from __future__ import annotations

import base64

import httpx

from xnat_prefect.testing import XNATEmulator


def test_jsession_login_sets_cookie_and_identifies_user(xnat_emulator: XNATEmulator) -> None:
    with httpx.Client(base_url=xnat_emulator.url) as client:
        reply = client.post("/data/JSESSION", auth=("admin", "admin"))
        assert reply.status_code == 200
        session_id = reply.text
        assert len(session_id) == 32 and session_id.isalnum()
        assert client.cookies.get("JSESSIONID") == session_id
        assert "HttpOnly" in reply.headers["set-cookie"]
        who = client.get("/xapi/users/username")
        assert who.status_code == 200 and who.text == "admin"
        assert client.get("/data/auth").text == "User 'admin' is logged in"


def test_bad_password_is_401(xnat_emulator: XNATEmulator) -> None:
    reply = httpx.post(f"{xnat_emulator.url}/data/JSESSION", auth=("admin", "wrong"))
    assert reply.status_code == 401


def test_anonymous_session_is_not_a_login(xnat_emulator: XNATEmulator) -> None:
    with httpx.Client(base_url=xnat_emulator.url) as client:
        reply = client.post("/data/JSESSION")
        assert reply.status_code == 200 and reply.text
        assert client.get("/xapi/users/username").status_code == 401


def test_unauthenticated_api_call_gets_basic_challenge(xnat_emulator: XNATEmulator) -> None:
    reply = httpx.get(f"{xnat_emulator.url}/data/projects")
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"] == 'Basic realm="XNAT"'


def test_browser_user_agent_is_redirected_to_login(xnat_emulator: XNATEmulator) -> None:
    reply = httpx.get(f"{xnat_emulator.url}/data/projects", headers={"User-Agent": "Mozilla/5.0"})
    assert reply.status_code == 302
    assert "Login" in reply.headers["location"]


def test_logout_invalidates_the_cookie(xnat_emulator: XNATEmulator) -> None:
    with httpx.Client(base_url=xnat_emulator.url) as client:
        client.post("/data/JSESSION", auth=("admin", "admin"))
        assert client.get("/data/projects").status_code == 200
        assert client.delete("/data/JSESSION").status_code == 200
        assert client.get("/data/projects").status_code == 401


def test_basic_auth_on_every_request_creates_sessions(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.reset_metrics()
    for _ in range(3):
        reply = httpx.get(f"{xnat_emulator.url}/data/projects", auth=("admin", "admin"))
        assert reply.status_code == 200
        assert "JSESSIONID=" in reply.headers["set-cookie"]
    assert xnat_emulator.metrics()["logins"] == 3


def test_expired_session_gets_401_and_relogin_works(xnat_emulator: XNATEmulator) -> None:
    with httpx.Client(base_url=xnat_emulator.url) as client:
        client.post("/data/JSESSION", auth=("admin", "admin"))
        assert xnat_emulator.expire_sessions() != []
        assert client.get("/data/projects").status_code == 401
        client.post("/data/JSESSION", auth=("admin", "admin"))
        assert client.get("/data/projects").status_code == 200


def test_idle_timeout_expires_sessions(xnat_emulator: XNATEmulator) -> None:
    import time

    xnat_emulator.set_timing(session_timeout_seconds=0.2)
    with httpx.Client(base_url=xnat_emulator.url) as client:
        client.post("/data/JSESSION", auth=("admin", "admin"))
        assert client.get("/data/projects").status_code == 200
        time.sleep(0.35)
        assert client.get("/data/projects").status_code == 401


def test_services_auth_form_login(xnat_emulator: XNATEmulator) -> None:
    with httpx.Client(base_url=xnat_emulator.url) as client:
        reply = client.put("/data/services/auth", data={"username": "admin", "password": "admin"})
        assert reply.status_code == 200
        assert client.get("/data/auth").status_code == 200
        bad = client.put("/data/services/auth", data={"username": "admin", "password": "x"})
        assert bad.status_code == 401


def test_alias_tokens_authenticate_and_can_be_invalidated(xnat_emulator: XNATEmulator) -> None:
    url = xnat_emulator.url
    token = httpx.get(f"{url}/data/services/tokens/issue", auth=("admin", "admin")).json()
    assert len(token["secret"]) == 64 and token["xdatUserId"] == "admin"
    as_token = httpx.get(f"{url}/xapi/users/username", auth=(token["alias"], token["secret"]))
    assert as_token.text == "admin"
    check = httpx.get(
        f"{url}/data/services/tokens/validate/{token['alias']}/{token['secret']}",
        auth=("admin", "admin"),
    )
    assert check.json() == {"valid": "admin"}
    gone = httpx.get(
        f"{url}/data/services/tokens/invalidate/{token['alias']}", auth=("admin", "admin")
    )
    assert gone.json() == {"result": "OK"}
    again = httpx.get(f"{url}/xapi/users/username", auth=(token["alias"], token["secret"]))
    assert again.status_code == 401


def test_build_info_is_open_and_version_route_is_gone(xnat_emulator: XNATEmulator) -> None:
    info = httpx.get(f"{xnat_emulator.url}/xapi/siteConfig/buildInfo")
    assert info.status_code == 200 and info.json()["version"].startswith("1.9")
    version = httpx.get(f"{xnat_emulator.url}/xapi/siteConfig/buildInfo/version")
    assert version.text.startswith("1.9")
    assert httpx.get(f"{xnat_emulator.url}/data/version").status_code == 404


def test_basic_header_password_never_echoed(xnat_emulator: XNATEmulator) -> None:
    secret = "S3cr3t-Value-Zz"
    header = base64.b64encode(f"admin:{secret}".encode()).decode()
    reply = httpx.get(
        f"{xnat_emulator.url}/data/projects", headers={"Authorization": f"Basic {header}"}
    )
    assert reply.status_code == 401
    assert secret not in reply.text and header not in reply.text
