"""The emulator's own control API (not part of XNAT): faults, timing, options, metrics, users.

Everything under ``/emulator`` is open on purpose: the emulator binds to loopback, and tests and
users' own test suites drive it from outside the process (``XNATEmulator`` offers the same calls
in Python).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from starlette.responses import Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.config import EmulatorOptions, Timing
from xnat_prefect.testing.faults import FaultRule
from xnat_prefect.testing.http import EmuRequest, HTTPError, route


def _body(req: EmuRequest) -> dict[str, Any]:
    payload = req.json()
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise HTTPError(400, "Send a JSON object.")
    return payload


@route("GET", "/emulator/health", auth=False)
def health(req: EmuRequest) -> Response:
    """``GET /emulator/health``: liveness and addresses."""
    state = req.state
    return wire.json_response(
        {
            "status": "ok",
            "url": state.url,
            "dicom_port": state.dicom_port,
            "dicom_ae_title": state.config.dicom_ae_title,
            "pending_work": state.has_pending_work,
        }
    )


@route("GET", "/emulator/metrics", auth=False)
def metrics(req: EmuRequest) -> Response:
    """``GET /emulator/metrics``: request counts, statuses, bytes, peak concurrency per route."""
    return wire.json_response(req.state.metrics.snapshot())


@route("POST", "/emulator/metrics/reset", auth=False)
def reset_metrics(req: EmuRequest) -> Response:
    """``POST /emulator/metrics/reset``: zero the metrics."""
    req.state.metrics.reset()
    return wire.json_response({"reset": True})


@route("GET", "/emulator/faults", auth=False)
def list_faults(req: EmuRequest) -> Response:
    """``GET /emulator/faults``: the active fault rules."""
    return wire.json_response([r.to_dict() for r in req.state.faults.rules()])


@route("POST", "/emulator/faults", auth=False)
def add_fault(req: EmuRequest) -> Response:
    """``POST /emulator/faults`` with a JSON rule (route, kind, rate, times, status…).

    ``store_status`` (``dicom_status`` rules) may be a number or a string such as ``"0xA700"``.
    """
    body = _body(req)
    try:
        if "latency_ms" in body:
            body["latency_ms"] = tuple(body["latency_ms"])
        if isinstance(body.get("store_status"), str):
            body["store_status"] = int(body["store_status"], 0)
        rule = req.state.faults.add(FaultRule(**body))
    except (TypeError, ValueError) as exc:
        raise HTTPError(400, f"Bad fault rule: {exc}") from exc
    return wire.json_response(rule.to_dict(), status_code=201)


@route("DELETE", "/emulator/faults", auth=False)
def clear_faults(req: EmuRequest) -> Response:
    """``DELETE /emulator/faults``: remove every rule."""
    req.state.faults.clear()
    return wire.json_response({"cleared": True})


@route("DELETE", "/emulator/faults/{rule_id:int}", auth=False)
def remove_fault(req: EmuRequest) -> Response:
    """``DELETE /emulator/faults/{id}``: remove one rule."""
    if not req.state.faults.remove(int(req.params["rule_id"])):
        raise HTTPError(404, f"No fault rule {req.params['rule_id']}")
    return wire.json_response({"removed": int(req.params["rule_id"])})


def _settings(req: EmuRequest, settings: Timing | EmulatorOptions) -> Response:
    if req.method == "PUT":
        try:
            settings.update(**_body(req))
        except ValueError as exc:
            raise HTTPError(400, str(exc)) from exc
    return wire.json_response(asdict(settings))


@route(("GET", "PUT"), "/emulator/timing", auth=False)
def timing(req: EmuRequest) -> Response:
    """``GET /emulator/timing``: asynchronous timings; ``PUT`` a JSON object to change some."""
    return _settings(req, req.state.timing)


@route(("GET", "PUT"), "/emulator/options", auth=False)
def options(req: EmuRequest) -> Response:
    """``GET /emulator/options``: behaviour switches (``honor_range``); ``PUT`` changes some."""
    return _settings(req, req.state.options)


@route("POST", "/emulator/sessions/expire", auth=False)
def expire_sessions(req: EmuRequest) -> Response:
    """``POST /emulator/sessions/expire[?login=]``: invalidate HTTP sessions."""
    killed = req.state.expire_sessions(req.query.get("login"))
    return wire.json_response({"expired": len(killed)})


@route("POST", "/emulator/users", auth=False)
def add_user(req: EmuRequest) -> Response:
    """``POST /emulator/users`` with JSON ``login``, ``password`` and optional ``admin``."""
    body = _body(req)
    if not body.get("login") or not body.get("password"):
        raise HTTPError(400, "Send login and password.")
    user = req.state.add_user(
        str(body["login"]),
        str(body["password"]),
        is_admin=bool(body.get("admin", False)),
        firstname=str(body.get("firstname", "")),
        lastname=str(body.get("lastname", "")),
        email=str(body.get("email", "")),
    )
    return wire.json_response({"login": user.login, "admin": user.is_admin}, status_code=201)


@route("POST", "/emulator/sweep", auth=False)
def sweep(req: EmuRequest) -> Response:
    """``POST /emulator/sweep``: run the background work once now."""
    return wire.json_response({"pending_work": req.state.run_ticks()})


ROUTES = [
    health,
    metrics,
    reset_metrics,
    list_faults,
    add_fault,
    clear_faults,
    remove_fault,
    timing,
    options,
    expire_sessions,
    add_user,
    sweep,
]
