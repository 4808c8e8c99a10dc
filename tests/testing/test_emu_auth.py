"""Authentication behaviour of the emulator, over real sockets."""

from __future__ import annotations

import base64
import time

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


def test_alias_token_guest_and_ownership_rules(xnat_emulator: XNATEmulator) -> None:
    url = xnat_emulator.url
    xnat_emulator.add_user("bob", "pw")
    anonymous = httpx.get(f"{url}/data/services/tokens/issue")  # not an open URL: 401 first
    assert anonymous.status_code == 401 and "www-authenticate" in anonymous.headers
    browser = httpx.get(f"{url}/data/services/tokens/issue", headers={"User-Agent": "Mozilla/5.0"})
    assert browser.status_code == 302 and browser.headers["location"] == "/app/template/Login.vm"
    with httpx.Client(base_url=url) as guest_session:
        guest_session.post("/data/JSESSION")  # an anonymous session is no login either
        assert guest_session.get("/data/services/tokens/issue").status_code == 401
    admin, bob = ("admin", "admin"), ("bob", "pw")
    for_guest = httpx.get(f"{url}/data/services/tokens/issue/user/guest", auth=admin)
    assert for_guest.status_code == 403 and "The guest user can" in for_guest.text
    xnat_emulator.add_user("guest", "guest")  # an account literally named guest
    as_guest = httpx.get(f"{url}/data/services/tokens/issue", auth=("guest", "guest"))
    assert as_guest.status_code == 403 and "guest user" in as_guest.text
    own = httpx.get(f"{url}/data/services/tokens/issue/user/bob", auth=bob)
    assert own.status_code == 200 and own.json()["xdatUserId"] == "bob"
    other = httpx.get(f"{url}/data/services/tokens/issue/user/admin", auth=bob)
    assert other.status_code == 403 and "their own account" in other.text
    token = httpx.get(f"{url}/data/services/tokens/issue", auth=admin).json()
    check = f"{url}/data/services/tokens/validate/{token['alias']}/{token['secret']}"
    assert httpx.get(check, auth=bob).status_code == 403
    assert httpx.get(check, auth=admin).json() == {"valid": "admin"}
    unknown = httpx.get(f"{url}/data/services/tokens/issue/user/nobody", auth=admin)
    assert unknown.status_code == 400 and "nobody" in unknown.text


def test_login_page_is_served(xnat_emulator: XNATEmulator) -> None:
    browser = {"User-Agent": "Mozilla/5.0 (X11)"}
    with httpx.Client(base_url=xnat_emulator.url, headers=browser, follow_redirects=True) as c:
        page = c.get("/data/projects")
        assert page.status_code == 200 and page.url.path == "/app/template/Login.vm"
        assert page.headers["content-type"].startswith("text/html")
        assert '<form id="login_form"' in page.text and 'name="password"' in page.text
    assert httpx.head(f"{xnat_emulator.url}/app/template/Login.vm").status_code == 200


def _site_config(emu: XNATEmulator, **values: object) -> None:
    reply = httpx.post(f"{emu.url}/xapi/siteConfig", json=values, auth=("admin", "admin"))
    assert reply.status_code == 200, reply.text


def test_max_failed_logins_lock_the_account(xnat_emulator: XNATEmulator) -> None:
    url = xnat_emulator.url
    xnat_emulator.add_user("bob", "pw")
    _site_config(xnat_emulator, maxFailedLogins=3)

    def who(password: str) -> int:
        return httpx.get(f"{url}/xapi/users/username", auth=("bob", password)).status_code

    assert [who("bad"), who("bad"), who("pw")] == [401, 401, 200]  # success clears the count
    assert [who("bad"), who("bad"), who("bad")] == [401, 401, 401]
    assert who("pw") == 401  # locked: even the right password is refused
    login = httpx.post(f"{url}/data/JSESSION", auth=("bob", "pw"))
    assert login.status_code == 401
    form = httpx.put(f"{url}/data/services/auth", data={"username": "bob", "password": "pw"})
    assert form.status_code == 401
    state = xnat_emulator.state
    assert state is not None and state.is_locked("bob")
    unlock = httpx.put(f"{url}/xapi/users/bob/enabled/true", auth=("admin", "admin"))
    assert unlock.status_code == 200 and who("pw") == 200  # an admin re-enabled the account
    _site_config(xnat_emulator, maxFailedLoginsLockoutDuration="1 second")
    assert [who("bad") for _ in range(3)] == [401, 401, 401] and who("pw") == 401
    time.sleep(1.1)
    assert who("pw") == 200  # the lockout timed out


def test_concurrent_max_sessions_prevent_login(xnat_emulator: XNATEmulator) -> None:
    url = xnat_emulator.url
    _site_config(xnat_emulator, concurrentMaxSessions=2)
    xnat_emulator.expire_sessions()  # the config call's own Basic login held a session
    with httpx.Client(base_url=url, auth=("admin", "admin")) as keeper:
        xnat_emulator.reset_metrics()
        for _ in range(5):  # Basic with this user's valid cookie: no new session (Spring)
            assert keeper.get("/xapi/users/username").status_code == 200
        assert xnat_emulator.metrics()["logins"] == 1
        fresh = httpx.get(f"{url}/xapi/users/username", auth=("admin", "admin"))
        assert fresh.status_code == 200  # the second session
        refused = httpx.get(f"{url}/xapi/users/username", auth=("admin", "admin"))
        assert refused.status_code == 401  # "max sessions prevents login"
        assert httpx.post(f"{url}/data/JSESSION", auth=("admin", "admin")).status_code == 401
        form = {"username": "admin", "password": "admin"}
        assert httpx.put(f"{url}/data/services/auth", data=form).status_code == 401
        assert keeper.get("/xapi/users/username").status_code == 200  # held sessions still work
        assert keeper.delete("/data/JSESSION").status_code == 200  # free one
        again = httpx.get(f"{url}/xapi/users/username", auth=("admin", "admin"))
        assert again.status_code == 200


def test_idle_sessions_are_swept_from_memory(xnat_emulator: XNATEmulator) -> None:
    state = xnat_emulator.state
    assert state is not None
    for _ in range(20):  # default 15-minute timeout: none can expire while they are made
        reply = httpx.get(f"{xnat_emulator.url}/data/auth", auth=("admin", "admin"))
        assert reply.status_code == 200
    assert state.session_count >= 20
    xnat_emulator.set_timing(session_timeout_seconds=0.5)
    deadline = time.monotonic() + 5
    while state.session_count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state.session_count == 0  # the sweeper's tick dropped them without any request
