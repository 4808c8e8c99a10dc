"""``watch_archive``: one event per newly archived session, watermark in a Prefect Variable."""

from __future__ import annotations

import time
from typing import Any

from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.variables import Variable

from xnat_prefect.blocks import XNATCredentials
from xnat_prefect.flows import EVENT_SESSION_ARCHIVED, watch_archive
from xnat_prefect.flows.results import ArchivedSession
from xnat_prefect.flows.watcher import new_sessions_since, watermark_variable


def _session(lab: Any, n: int) -> str:
    reply = lab.rest.put(
        f"/data/projects/P1/subjects/S{n}/experiments/S{n}_MR1",
        params={"xsiType": "xnat:mrSessionData"},
    )
    assert reply.status_code == 201, reply.text
    return str(reply.text.strip())


def _events(resource_ids: list[str], timeout: float = 15.0) -> list[Any]:
    """Events the Prefect API stored for these resources (events arrive asynchronously)."""
    deadline = time.monotonic() + timeout
    found: list[Any] = []
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            page = client.read_events(
                filter=EventFilter(
                    event=EventNameFilter(name=[EVENT_SESSION_ARCHIVED]),
                    resource=EventResourceFilter(id=resource_ids),
                ),
                limit=50,
            )
        found = list(page.events)
        if len(found) >= len(resource_ids):
            return found
        time.sleep(0.25)
    return found


def test_watcher_emits_new_sessions_and_advances_the_watermark(
    creds: XNATCredentials, lab: Any
) -> None:
    lab.project("P1")
    old = _session(lab, 1)
    baseline = watch_archive(creds, "P1")
    assert baseline.baseline_only and baseline.events_emitted == 0
    name = watermark_variable(creds.server_key, "P1")
    assert baseline.variable == name
    stored = Variable.get(name)
    assert isinstance(stored, dict) and stored["ids"] == [old]
    new = [_session(lab, 2), _session(lab, 3)]
    creds.save("xnat-flows-watch-test", overwrite=True)
    second = watch_archive("xnat-flows-watch-test", "P1")  # a saved block, by name
    assert [s.experiment_id for s in second.new_sessions] == new
    assert second.events_emitted == 2 and second.watermark
    assert second.watermark >= (baseline.watermark or "")
    third = watch_archive(creds, "P1")
    assert third.events_emitted == 0 and third.watermark == second.watermark
    resources = [f"xnat.session.{creds.server_key}.{e}" for e in new]
    events = _events(resources)
    assert sorted(e.resource.id for e in events) == sorted(resources)
    payload = {e.payload["experiment_id"]: e.payload for e in events}
    assert payload[new[0]]["subject_label"] == "S2"
    assert payload[new[0]]["session_label"] == "S2_MR1" and payload[new[0]]["project"] == "P1"


def test_watermark_keeps_sessions_archived_at_the_same_instant() -> None:
    def item(eid: str, when: str | None) -> ArchivedSession:
        return ArchivedSession(experiment_id=eid, project="P1", insert_date=when)

    first, mark = new_sessions_since([item("E1", "2024-01-01T10:00:00")], None)
    assert [s.experiment_id for s in first] == ["E1"]
    later = [
        item("E1", "2024-01-01T10:00:00"),
        item("E2", "2024-01-01T10:00:00"),
        item("E3", None),
    ]
    fresh, mark = new_sessions_since(later, mark)
    assert [s.experiment_id for s in fresh] == ["E2", "E3"]
    assert mark == {"insert_date": "2024-01-01T10:00:00", "ids": ["E1", "E2"], "undated": ["E3"]}
    fresh, _ = new_sessions_since(later, mark)
    assert fresh == []
