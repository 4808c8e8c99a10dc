"""Site administration: ``/xapi/siteConfig``, ``/xapi/plugins`` and ``/xapi/anonymize``.

* ``GET /xapi/siteConfig`` — every preference (null → ``""``); ``POST`` (admin) a JSON or form
  map. ``GET /xapi/siteConfig/{key}`` — the value (404 for an unknown key); string values are
  written raw, not JSON-quoted, as Spring's string converter does; ``POST /{key}`` (admin) sets
  one from a text/JSON body (converted to the preference's type; new keys are accepted, as
  XNAT's non-strict site config does). ``GET /values/{k1,k2}`` — a map of the known ones.
  ``/siteId``, ``/siteUrl``, ``/siteHome``, ``/siteLogoPath`` are open URLs.
  (``/buildInfo`` is served by :mod:`auth`.)
* ``GET /xapi/plugins`` — object keyed by plugin id (``containers`` and ``batchLaunchPlugin``
  while the emulated Container Service is enabled); ``/xapi/plugins/{id}`` — one or 404.
* ``/xapi/anonymize/default|site|site/enabled|projects/{P}|projects/{P}/enabled`` — the
  site-wide DicomEdit script lives in the site preferences ``sitewideAnonymizationScript`` /
  ``enableSitewideAnonymizationScript``; project scripts in ``anon_projects``. A project with no
  script, or a disabled one, answers 204; unknown projects answer 500 (as XNAT does).
  :func:`anonymization_script` gives other modules the effective script for a project. The
  site script is DISABLED by default here (XNAT enables it); enabled scripts are applied to
  received DICOM by :mod:`_anon` (a DicomEdit subset).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.http import EmuRequest, HTTPError, route
from xnat_prefect.testing.state import EmulatorState

SCHEMA = """
CREATE TABLE IF NOT EXISTS anon_projects (
    project TEXT PRIMARY KEY,
    script TEXT NOT NULL DEFAULT '',
    enabled INTEGER NOT NULL DEFAULT 1
);
"""

DEFAULT_SCRIPT = (
    "//\n"
    "// Default site-wide anonymization script of the XNAT emulator (DicomEdit 6).\n"
    "// Writes XNAT's project, subject and session labels into the DICOM headers.\n"
    "//\n"
    'version "6.1"\n'
    'project != "Unassigned" ? (0008,1030) := project\n'
    "(0010,0010) := subject\n"
    "(0010,0020) := session\n"
)
EXTRA_DEFAULTS: dict[str, Any] = {
    "siteHome": "/app/template/Index.vm",
    "siteLogoPath": "/images/logo.png",
    "sitewideAnonymizationScript": DEFAULT_SCRIPT,
    # XNAT ships this enabled; the emulator does not, so uploaded DICOM stays byte-identical
    # unless a test turns anonymization on (it is then applied on receipt, see _anon).
    "enableSitewideAnonymizationScript": False,
}
SITE_SCRIPT = "sitewideAnonymizationScript"
SITE_SCRIPT_ENABLED = "enableSitewideAnonymizationScript"


def preference(state: EmulatorState, key: str) -> Any:
    """One site preference, including the ones this module adds defaults for.

    Args:
        state: Emulator state.
        key: Preference name.

    Returns:
        The value, or None when unknown.
    """
    value = state.site_config(key)
    return EXTRA_DEFAULTS.get(key) if value is None else value


def _all(state: EmulatorState) -> dict[str, Any]:
    values = {**EXTRA_DEFAULTS, **state.all_site_config()}
    return {k: "" if v is None else v for k, v in values.items()}


def _coerce(old: Any, text: str, is_json: bool) -> Any:
    """Turn a posted body into the preference's type (XNAT converts strings per preference)."""
    if is_json:
        try:
            return json.loads(text)
        except ValueError:
            pass
    stripped = text.strip()
    if isinstance(old, bool):
        return stripped.lower() == "true"
    if isinstance(old, int) and stripped.lstrip("-").isdigit():
        return int(stripped)
    if isinstance(old, list | dict):
        try:
            return json.loads(stripped)
        except ValueError:
            return text
    return text


def _value_response(value: Any) -> Response:
    if isinstance(value, str):
        return Response(value, media_type="application/json")
    return wire.json_response(value)


# ----------------------------------------------------------------- site config


@route("GET", "/xapi/siteConfig/{key}", auth=False)
def open_value(req: EmuRequest) -> Response:
    """``GET /xapi/siteConfig/{key}``: open for siteId/siteUrl/siteHome/siteLogoPath."""
    key = req.params["key"]
    if key not in ("siteId", "siteUrl", "siteHome", "siteLogoPath") and req.user is None:
        raise HTTPError(401, "")
    values = _all(req.state)
    if key not in values:
        raise HTTPError(404, f"No site configuration property named {key}")
    return _value_response(values[key])


@route("GET", "/xapi/siteConfig")
def get_config(req: EmuRequest) -> Response:
    """``GET /xapi/siteConfig``: the whole preference map."""
    return wire.json_response(_all(req.state))


@route("POST", "/xapi/siteConfig", admin=True)
def set_config(req: EmuRequest) -> Response:
    """``POST /xapi/siteConfig`` (admin): set every key of a JSON or form map."""
    if req.content_type == "application/x-www-form-urlencoded":
        body: Any = dict(req.form)
    else:
        body = req.json()
    if not isinstance(body, dict):
        raise HTTPError(400, "There was an error in the request: send a JSON object")
    current = _all(req.state)
    with req.state.store.tx():
        for key, value in body.items():
            if isinstance(value, str) and not isinstance(current.get(key), str):
                value = _coerce(current.get(key), value, is_json=False)
            req.state.set_site_config(str(key), value)
    return wire.text_response("")


@route("GET", "/xapi/siteConfig/values/{keys}")
def get_values(req: EmuRequest) -> Response:
    """``GET /xapi/siteConfig/values/{k1,k2}``: the named preferences that exist."""
    values = _all(req.state)
    wanted = [k.strip() for k in req.params["keys"].split(",") if k.strip()]
    return wire.json_response({k: values[k] for k in wanted if k in values})


@route("POST", "/xapi/siteConfig/{key}", admin=True)
def set_value(req: EmuRequest) -> Response:
    """``POST /xapi/siteConfig/{key}`` (admin): the body (text or JSON) becomes the value."""
    key = req.params["key"]
    old = _all(req.state).get(key)
    value = _coerce(old, req.body_text(), is_json=req.content_type == "application/json")
    req.state.set_site_config(key, value)
    return wire.text_response("")


# ----------------------------------------------------------------- plugins


def _plugins(state: EmulatorState) -> dict[str, dict[str, Any]]:
    from xnat_prefect.testing.routes.containers import is_enabled

    if not is_enabled(state):
        return {}
    return {
        "containers": {
            "id": "containers",
            "name": "XNAT 1.9 Container Service",
            "version": "3.7.2",
            "pluginClass": "org.nrg.containers.ContainersConfig",
            "beanName": "containers",
            "description": "Runs containerized processing on XNAT data (emulated).",
            "logConfigurationFile": "",
            "entityPackages": ["org.nrg.containers.model"],
            "extendedAttributes": {},
        },
        "batchLaunchPlugin": {
            "id": "batchLaunchPlugin",
            "name": "XNAT Batch Launch Plugin",
            "version": "0.7.0",
            "pluginClass": "org.nrg.xnatx.plugins.batch.BatchLaunchPlugin",
            "beanName": "batchLaunchPlugin",
            "description": "Workflow monitoring and bulk launches (emulated).",
            "logConfigurationFile": "",
            "entityPackages": [],
            "extendedAttributes": {},
        },
    }


@route("GET", "/xapi/plugins")
def list_plugins(req: EmuRequest) -> Response:
    """``GET /xapi/plugins``: installed plugins keyed by id."""
    return wire.json_response(_plugins(req.state))


@route("GET", "/xapi/plugins/{plugin}")
def get_plugin(req: EmuRequest) -> Response:
    """``GET /xapi/plugins/{id}``: one plugin, 404 when not installed."""
    plugin = _plugins(req.state).get(req.params["plugin"])
    if plugin is None:
        raise HTTPError(
            404, f"No plugin with ID {req.params['plugin']} could be found on this system"
        )
    return wire.json_response(plugin)


# ----------------------------------------------------------------- anonymization


def anonymization_script(state: EmulatorState, project: str | None) -> str | None:
    """The DicomEdit script XNAT would apply to data arriving in a project.

    Args:
        state: Emulator state.
        project: Project ID (None: site-wide only).

    Returns:
        The enabled project script, else the enabled site-wide script, else None.
    """
    if project:
        row = state.store.one("SELECT * FROM anon_projects WHERE project=?", (project,))
        if row is not None and row["enabled"] and row["script"].strip():
            return str(row["script"])
    if preference(state, SITE_SCRIPT_ENABLED):
        return str(preference(state, SITE_SCRIPT) or "") or None
    return None


def _text(value: str) -> Response:
    return wire.text_response(value, media_type="text/plain")


def _enable_param(req: EmuRequest) -> bool:
    value = req.arg("enable")
    return True if value is None else value.strip().lower() not in ("false", "0")


@route("GET", "/xapi/anonymize/default")
def default_script(req: EmuRequest) -> Response:
    """``GET /xapi/anonymize/default``: the built-in default script."""
    return _text(DEFAULT_SCRIPT)


@route("GET", "/xapi/anonymize/site")
def site_script(req: EmuRequest) -> Response:
    """``GET /xapi/anonymize/site``: the site-wide script text."""
    return _text(str(preference(req.state, SITE_SCRIPT) or ""))


@route("PUT", "/xapi/anonymize/site", admin=True)
def set_site_script(req: EmuRequest) -> Response:
    """``PUT /xapi/anonymize/site`` (admin): replace the site-wide script."""
    req.state.set_site_config(SITE_SCRIPT, req.body_text())
    return wire.text_response("")


@route("GET", "/xapi/anonymize/site/enabled")
def site_enabled(req: EmuRequest) -> Response:
    """``GET /xapi/anonymize/site/enabled``: ``true|false``."""
    return wire.json_response(bool(preference(req.state, SITE_SCRIPT_ENABLED)))


@route("PUT", "/xapi/anonymize/site/enabled", admin=True)
def set_site_enabled(req: EmuRequest) -> Response:
    """``PUT /xapi/anonymize/site/enabled?enable=true|false`` (admin)."""
    req.state.set_site_config(SITE_SCRIPT_ENABLED, _enable_param(req))
    return wire.text_response("")


def _anon_project(req: EmuRequest, *, write: bool) -> str:
    state = req.state
    ref = req.params["project"]
    project_id = state.resolve_project(ref)
    if project_id is None:
        raise HTTPError(500, f"An unexpected error occurred: no project {ref}")
    allowed = state.can_delete if write else state.can_read
    if not allowed(req.user, project_id):
        raise HTTPError(403, "")
    return project_id


@route("GET", "/xapi/anonymize/projects/{project}")
def project_script(req: EmuRequest) -> Response:
    """``GET /xapi/anonymize/projects/{P}``: the script, or 204 when unset or disabled."""
    project_id = _anon_project(req, write=False)
    row = req.state.store.one("SELECT * FROM anon_projects WHERE project=?", (project_id,))
    if row is None or not row["enabled"] or not row["script"].strip():
        return Response(status_code=204)
    return _text(str(row["script"]))


@route("PUT", "/xapi/anonymize/projects/{project}")
def set_project_script(req: EmuRequest) -> Response:
    """``PUT /xapi/anonymize/projects/{P}`` (owners): store and enable the project script."""
    project_id = _anon_project(req, write=True)
    req.state.store.execute(
        "INSERT INTO anon_projects(project, script, enabled) VALUES(?,?,1) "
        "ON CONFLICT(project) DO UPDATE SET script=excluded.script, enabled=1",
        (project_id, req.body_text()),
    )
    return wire.text_response("")


@route("GET", "/xapi/anonymize/projects/{project}/enabled")
def project_enabled(req: EmuRequest) -> Response:
    """``GET /xapi/anonymize/projects/{P}/enabled``: ``true|false``."""
    project_id = _anon_project(req, write=False)
    row = req.state.store.one("SELECT enabled FROM anon_projects WHERE project=?", (project_id,))
    return wire.json_response(bool(row is not None and row["enabled"]))


@route("PUT", "/xapi/anonymize/projects/{project}/enabled")
def set_project_enabled(req: EmuRequest) -> Response:
    """``PUT /xapi/anonymize/projects/{P}/enabled?enable=true|false`` (owners)."""
    project_id = _anon_project(req, write=True)
    req.state.store.execute(
        "INSERT INTO anon_projects(project, script, enabled) VALUES(?, '', ?) "
        "ON CONFLICT(project) DO UPDATE SET enabled=excluded.enabled",
        (project_id, int(_enable_param(req))),
    )
    return wire.text_response("")


ROUTES = [
    get_config,
    set_config,
    get_values,
    open_value,
    set_value,
    list_plugins,
    get_plugin,
    default_script,
    site_script,
    set_site_script,
    site_enabled,
    set_site_enabled,
    project_script,
    set_project_script,
    project_enabled,
    set_project_enabled,
]
