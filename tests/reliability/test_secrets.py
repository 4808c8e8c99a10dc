"""Suite 6 - secrets: a distinctive password and alias token never show up anywhere.

The flows run (successes and failures, under faults so retry warnings are logged too) with a
user whose password is distinctive and with an alias token of that user. Then every place a
secret could leak is searched, in every spelling (plain, URL-encoded, base64 of the Basic
``user:secret`` pair) plus every JSESSIONID the server handed out:

* every log record of every logger at DEBUG (``httpx``, ``httpcore``, ``prefect``, ours), with
  its arguments and traceback text;
* the flow runs' logs, parameters, task run inputs and artifacts read back from the Prefect API;
* the message and ``repr`` of every exception raised, and of the client and the blocks.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from pydantic import SecretStr

from tests.reliability._support import Inspector, record_figures
from xnat_prefect.blocks import XNATCredentials
from xnat_prefect.client import XNATClient
from xnat_prefect.errors import ResourceNotFoundError, XNATError
from xnat_prefect.flows.download import download_sessions
from xnat_prefect.flows.ingest import ingest_dicom

USER = "reliauser"
# ASCII: the emulator 500s on non-ASCII passwords (reported: secrets.compare_digest on str)
PASSWORD = "Zq9!pa55 w0rd%&+/=:x"


def spellings(secret: str, user: str | None = None) -> set[str]:
    """The forms a secret could leak in."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret, safe="")}
    forms.add(base64.b64encode(secret.encode()).decode())
    if user is not None:
        pair = base64.b64encode(f"{user}:{secret}".encode()).decode()
        forms.update({pair, pair.rstrip("=")})
    return {f for f in forms if len(f) >= 6}


def _hits(text: str, forms: set[str]) -> list[str]:
    return sorted(f for f in forms if f in text)


class AliasTokenShownError(AssertionError):
    """The alias (id half) of an alias token is shown somewhere (BUG-11, fixed)."""


@pytest.mark.slow
def test_no_secret_reaches_logs_artifacts_or_errors(
    prefect: None, lab: Inspector, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "prefect", "xnat_prefect"):
        caplog.set_level(logging.DEBUG, logger=name)
    emulator = lab.emulator
    emulator.add_user(USER, PASSWORD, admin=True)
    lab.project("P1")
    folder, _ = lab.study(files=8)
    with XNATClient(emulator.url, USER, PASSWORD) as client:
        token = client.get_json("/data/services/tokens/issue")
    alias, secret = str(token["alias"]), str(token["secret"])
    forms = spellings(PASSWORD, USER) | spellings(secret, alias)
    alias_forms = spellings(alias)
    by_password = XNATCredentials(url=emulator.url, username=USER, password=SecretStr(PASSWORD))
    by_token = XNATCredentials(
        url=emulator.url, alias_token=alias, alias_secret=SecretStr(secret), max_retries=3
    )
    errors: list[BaseException] = []
    states: list[Any] = []
    # successes, under faults so that retries are logged with their reasons
    emulator.add_fault(r"^GET /data/", "status", rate=0.2, status=503)
    emulator.add_fault(r"^POST /data/services/import", "drop", rate=0.1)
    state = ingest_dicom(
        by_password,
        str(folder),
        transport="gradual",
        project="P1",
        subject="SUBJ01",
        session="SUBJ01_MR1",
        stall_seconds=10,
        poll_interval_seconds=0.1,
        return_state=True,
    )
    states.append(state)
    experiment = state.result().experiment_id
    emulator.clear_faults()
    states.append(
        download_sessions(by_token, [experiment], str(tmp_path / "out"), return_state=True)
    )
    # failures: a missing session (through the token) and a refused login (wrong secret)
    for credentials, sessions in (
        (by_token, ["XNAT_E99999"]),
        (
            XNATCredentials(
                url=emulator.url,
                alias_token=alias,
                alias_secret=SecretStr(secret[::-1]),
                max_retries=0,
            ),
            [experiment],
        ),
    ):
        failed = download_sessions(credentials, sessions, str(tmp_path / "out2"), return_state=True)
        states.append(failed)
        with pytest.raises(XNATError) as caught:
            failed.result()
        errors.append(caught.value)
    assert isinstance(errors[0], ResourceNotFoundError)
    # session ids the server handed out during the runs
    session_ids = set(emulator.expire_sessions())
    forms |= {s for s in session_ids if len(s) >= 8}
    texts: dict[str, str] = {}
    texts["log records"] = "\n".join(
        f"{r.name} {r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records
    )
    texts["captured log text"] = caplog.text
    texts["exceptions"] = "\n".join(f"{e}\n{e!r}\n{e.__cause__!r}" for e in errors)
    texts["reprs"] = "\n".join(
        repr(x) for x in (by_password, by_token, by_password.shared_client(), by_token)
    )
    run_ids = [s.state_details.flow_run_id for s in states]
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=run_ids)))
        texts["prefect logs"] = "\n".join(log.message for log in logs)
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids))
        )
        texts["flow run parameters"] = "\n".join(repr(r.parameters) for r in runs)
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids))
        )
        texts["task runs"] = "\n".join(f"{t.name} {t.task_inputs!r} {t.state!r}" for t in tasks)
        artifacts = client.read_artifacts()
        texts["artifacts"] = "\n".join(f"{a.key} {a.description} {a.data!r}" for a in artifacts)
    leaks = {where: _hits(text, forms) for where, text in texts.items()}
    alias_leaks = {where: _hits(text, alias_forms) for where, text in texts.items()}
    checked = {where: len(text) for where, text in texts.items()}
    record_figures(
        "secrets",
        spellings_searched=len(forms),
        session_ids=len(session_ids),
        characters_searched=checked,
        log_records=len(caplog.records),
        prefect_logs=len(logs),
        artifacts=len(artifacts),
        hits=sum(len(v) for v in leaks.values()),
        alias_token_id_shown_in=sorted(k for k, v in alias_leaks.items() if v),
    )
    assert all(checked.values()), checked  # every place had something to search
    assert len(caplog.records) > 100 and len(logs) > 10
    assert leaks == {where: [] for where in texts}, leaks
    assert not any(alias_leaks[k] for k in ("log records", "prefect logs", "exceptions"))
    shown = sorted(k for k, v in alias_leaks.items() if v)
    if shown:
        raise AliasTokenShownError(f"the alias token's id is shown in: {', '.join(shown)}")
