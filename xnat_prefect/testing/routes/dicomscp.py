"""DICOM SCP receiver definitions: ``/xapi/dicomscp`` (administrators only).

These are records only: the one receiver that really listens is the emulator's own C-STORE
SCP, which appears as receiver 1 with the live AE title and port (unless a PUT overrides
them in the record). Behaviour copied from XNAT's ``DicomSCPApi``:

* ``GET /xapi/dicomscp`` — bare array; ``GET /{id}`` — one (404 "Unable to find requested file
  or resource: DicomSCPInstance(id: N)"); ``GET /title/{title}/{port}``.
* ``POST`` JSON ``{"aeTitle", "port", ...}`` → **200** with the created object (port not
  validated); the same title and port twice → 400.
* ``PUT /{id}`` — partial merge, returns the whole object; unknown id → 500.
* ``DELETE /{id}`` → 200 (404 when unknown); ``GET /{id}/enabled``; ``PUT /{id}/enabled/{flag}``;
  ``PUT /start`` and ``/stop``; ``GET /identifiers``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.responses import Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.http import EmuRequest, HTTPError, route
from xnat_prefect.testing.state import EmulatorState

SCHEMA = """
CREATE TABLE IF NOT EXISTS dicomscp (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL
);
"""

IDENTIFIERS = {
    "dicomObjectIdentifier": "Default DICOM object identifier (ClassicDicomObjectIdentifier)"
}
DEFAULTS: dict[str, Any] = {
    "identifier": "dicomObjectIdentifier",
    "fileNamer": None,
    "enabled": True,
    "customProcessing": False,
    "directArchive": False,
    "anonymizationEnabled": True,
    "whitelistEnabled": False,
    "whitelist": [],
    "routingExpressionsEnabled": False,
    "projectRoutingExpression": "",
    "subjectRoutingExpression": "",
    "sessionRoutingExpression": "",
    "label": "",
}
SETTABLE = ("aeTitle", "port", *DEFAULTS)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _ensure_default(state: EmulatorState) -> None:
    """Create receiver 1 (the live SCP) the first time the table is used."""
    store = state.store
    with store.tx():
        if store.one("SELECT 1 FROM meta WHERE key='dicomscp_seeded'") is not None:
            return
        stamp = _now_ms()
        body = {**DEFAULTS, "created": stamp, "timestamp": stamp, "disabled": 0}
        store.execute("INSERT INTO dicomscp(id, body) VALUES(1, ?)", (json.dumps(body),))
        store.execute("INSERT INTO meta(key, value) VALUES('dicomscp_seeded', '1')")


def _render(state: EmulatorState, scp_id: int, body: dict[str, Any]) -> dict[str, Any]:
    live = {"aeTitle": state.config.dicom_ae_title, "port": state.dicom_port}
    merged = {"id": scp_id, **live, **body} if scp_id == 1 else {"id": scp_id, **body}
    order = ("id", "aeTitle", "port", *DEFAULTS, "created", "timestamp", "disabled")
    return {key: merged.get(key) for key in order}


def _all(state: EmulatorState) -> list[dict[str, Any]]:
    _ensure_default(state)
    rows = state.store.query("SELECT * FROM dicomscp ORDER BY id")
    return [_render(state, int(r["id"]), json.loads(r["body"])) for r in rows]


def _one(req: EmuRequest, scp_id: int) -> dict[str, Any] | None:
    return next((s for s in _all(req.state) if s["id"] == scp_id), None)


def _one_or_404(req: EmuRequest) -> dict[str, Any]:
    scp_id = int(req.params["scp_id"])
    found = _one(req, scp_id)
    if found is None:
        raise HTTPError(
            404, f"Unable to find requested file or resource: DicomSCPInstance(id: {scp_id})"
        )
    return found


def _save(req: EmuRequest, scp: dict[str, Any]) -> None:
    body = {k: v for k, v in scp.items() if k != "id"}
    if scp["id"] == 1 and body.get("aeTitle") == req.state.config.dicom_ae_title:
        body.pop("aeTitle")
    if scp["id"] == 1 and body.get("port") == req.state.dicom_port:
        body.pop("port")
    req.state.store.execute("UPDATE dicomscp SET body=? WHERE id=?", (json.dumps(body), scp["id"]))


def _check_unique(req: EmuRequest, title: Any, port: Any, scp_id: int | None) -> None:
    for other in _all(req.state):
        if other["id"] != scp_id and other["aeTitle"] == title and other["port"] == port:
            raise HTTPError(
                400,
                "There was an error in the request: there is already a DICOM SCP instance with "
                f"the AE title and port {title}:{port}",
            )


def _body(req: EmuRequest) -> dict[str, Any]:
    body = req.json()
    if not isinstance(body, dict):
        raise HTTPError(400, "There was an error in the request: send a JSON object")
    if "port" in body and not isinstance(body["port"], int):
        try:
            body["port"] = int(body["port"])
        except (TypeError, ValueError) as exc:
            raise HTTPError(400, f"There was an error in the request: bad port {exc}") from exc
    return {k: v for k, v in body.items() if k in SETTABLE}


@route("GET", "/xapi/dicomscp", admin=True)
def list_receivers(req: EmuRequest) -> Response:
    """``GET /xapi/dicomscp``: every receiver definition."""
    return wire.json_response(_all(req.state))


@route("POST", "/xapi/dicomscp", admin=True)
def create_receiver(req: EmuRequest) -> Response:
    """``POST /xapi/dicomscp``: a new record → 200 with it; duplicate title and port → 400."""
    body = _body(req)
    if not str(body.get("aeTitle") or "").strip():
        raise HTTPError(400, "There was an error in the request: aeTitle is required")
    body.setdefault("port", 0)
    _check_unique(req, body["aeTitle"], body["port"], None)
    stamp = _now_ms()
    record = {**DEFAULTS, **body, "created": stamp, "timestamp": stamp, "disabled": 0}
    scp_id = req.state.store.execute("INSERT INTO dicomscp(body) VALUES(?)", (json.dumps(record),))
    return wire.json_response(_render(req.state, scp_id, record))


@route("GET", "/xapi/dicomscp/identifiers", admin=True)
def identifiers(req: EmuRequest) -> Response:
    """``GET /xapi/dicomscp/identifiers``: the DICOM object identifiers."""
    return wire.json_response(IDENTIFIERS)


@route("PUT", "/xapi/dicomscp/{action:str}", admin=True)
def start_stop(req: EmuRequest) -> Response:
    """``PUT /xapi/dicomscp/start|stop``: the enabled receivers' ``title:port`` keys."""
    if req.params["action"] not in ("start", "stop"):
        raise HTTPError(404, f"Unable to find requested file or resource: {req.params['action']}")
    keys = [f"{s['aeTitle']}:{s['port']}" for s in _all(req.state) if s["enabled"]]
    return wire.json_response(keys)


@route("GET", "/xapi/dicomscp/title/{title}/{port:int}", admin=True)
def by_title(req: EmuRequest) -> Response:
    """``GET /xapi/dicomscp/title/{title}/{port}``."""
    title, port = req.params["title"], int(req.params["port"])
    for scp in _all(req.state):
        if scp["aeTitle"] == title and scp["port"] == port:
            return wire.json_response(scp)
    raise HTTPError(
        404, f"Unable to find requested file or resource: DicomSCPInstance({title}:{port})"
    )


@route("GET", "/xapi/dicomscp/{scp_id:int}", admin=True)
def get_receiver(req: EmuRequest) -> Response:
    """``GET /xapi/dicomscp/{id}``."""
    return wire.json_response(_one_or_404(req))


@route("PUT", "/xapi/dicomscp/{scp_id:int}", admin=True)
def update_receiver(req: EmuRequest) -> Response:
    """``PUT /xapi/dicomscp/{id}``: partial merge; unknown id → 500 (as XNAT's Hibernate)."""
    scp_id = int(req.params["scp_id"])
    current = _one(req, scp_id)
    if current is None:
        raise HTTPError(
            500, f"An unexpected error occurred: no row with the given identifier exists: {scp_id}"
        )
    merged = {**current, **_body(req), "timestamp": _now_ms()}
    _check_unique(req, merged["aeTitle"], merged["port"], scp_id)
    _save(req, merged)
    return wire.json_response(_one_or_404(req))


@route("DELETE", "/xapi/dicomscp/{scp_id:int}", admin=True)
def delete_receiver(req: EmuRequest) -> Response:
    """``DELETE /xapi/dicomscp/{id}``: 200; 404 when unknown."""
    scp = _one_or_404(req)
    req.state.store.execute("DELETE FROM dicomscp WHERE id=?", (scp["id"],))
    return wire.text_response("")


@route("GET", "/xapi/dicomscp/{scp_id:int}/enabled", admin=True)
def receiver_enabled(req: EmuRequest) -> Response:
    """``GET /xapi/dicomscp/{id}/enabled``: ``true|false``."""
    return wire.json_response(bool(_one_or_404(req)["enabled"]))


@route("PUT", "/xapi/dicomscp/{scp_id:int}/enabled/{flag}", admin=True)
def set_receiver_enabled(req: EmuRequest) -> Response:
    """``PUT /xapi/dicomscp/{id}/enabled/{true|false}``: the updated record."""
    scp = _one_or_404(req)
    flag = req.params["flag"].lower()
    if flag not in ("true", "false"):
        raise HTTPError(400, f"There was an error in the request: invalid flag {flag}")
    _save(req, {**scp, "enabled": flag == "true", "timestamp": _now_ms()})
    return wire.json_response(_one_or_404(req))


ROUTES = [
    list_receivers,
    create_receiver,
    identifiers,
    by_title,
    get_receiver,
    update_receiver,
    start_stop,
    delete_receiver,
    receiver_enabled,
    set_receiver_enabled,
]
