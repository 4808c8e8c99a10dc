"""Memory that does not grow with the number of files, and that the lean paths change nothing.

* ``run_in_passes`` keeps a bounded window of submitted work (not one ``Future`` per item),
  with the same order, retry passes and fatal-error stop;
* gradual-DICOM payloads are made when sent (:class:`FilePayloads`);
* file listings are read row by row (:func:`iter_table_rows`), falling back to the whole
  document when the streamed body is not what the reader expects, and give the same plan.
"""

from __future__ import annotations

import json
import threading
import tracemalloc
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from xnat_prefect.client import XNATClient
from xnat_prefect.errors import PermissionDeniedError, XNATStatusError
from xnat_prefect.models import parse_result_set
from xnat_prefect.models.resource import ResourceFile
from xnat_prefect.services._transfer_listing import NotStreamableError, iter_table_rows
from xnat_prefect.services._transfer_plan import scan_files, scan_types, session_resource_files
from xnat_prefect.services._transfer_retry import WINDOW_PER_WORKER, run_in_passes
from xnat_prefect.services._transfer_send import FilePayloads, file_payload
from xnat_prefect.testing.faults import FaultKind
from xnat_prefect.testing.server import XNATEmulator

LISTING = r"GET /data/experiments/[^/]+/scans/ALL/files$"


@pytest.fixture
def session(client: XNATClient, rest: Any, tmp_path: Path) -> str:
    """P1/SUBJ1/SESS1: 3 scans of 4 DICOM files each (archived by one DICOM-zip import)."""
    experiment_id = rest.archive_study(
        tmp_path / "seed", series=3, instances_per_series=4, rows=16, cols=16
    )
    return experiment_id


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


# ----------------------------------------------------------------------------- run_in_passes


def test_the_pool_holds_a_bounded_window_and_keeps_order_and_results() -> None:
    workers, count = 4, 20_000
    started: list[int] = []
    lock = threading.Lock()

    def work(item: int) -> None:
        with lock:
            started.append(item)

    tracemalloc.start()
    try:
        outcome = run_in_passes(range(count), work, workers=workers)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert outcome.done == set(range(count)) and not outcome.failed and outcome.passes == 1
    # submitted in order: a worker never starts an item more than the window ahead
    assert all(abs(item - position) <= workers * WINDOW_PER_WORKER for position, item in
               enumerate(started))  # fmt: skip
    # one Future per item (about 1.4 kB each) would add ~28 MB here; the sets, the ints and
    # the list of started items are ~6 MB
    assert peak < 10_000_000, f"peak {peak / 1e6:.1f} MB of Python heap for {count} items"


def test_transient_failures_run_again_in_later_passes_at_lower_concurrency() -> None:
    attempts: dict[int, int] = {}
    threads: dict[int, set[str]] = {}
    lock = threading.Lock()

    def work(item: int) -> None:
        with lock:
            attempts[item] = attempts.get(item, 0) + 1
            threads.setdefault(attempts[item], set()).add(threading.current_thread().name)
            tries = attempts[item]
        if item % 7 == 0 and tries < 3:  # fails in passes 1 and 2
            raise XNATStatusError(503, "busy")
        if item == 5:
            raise XNATStatusError(404, "gone")  # permanent: not retried

    passes: list[tuple[int, int]] = []
    outcome = run_in_passes(
        range(200), work, workers=8, on_retry_pass=lambda n, c: passes.append((n, c))
    )
    sevens = [i for i in range(200) if i % 7 == 0]
    assert passes == [(2, len(sevens)), (3, len(sevens))]
    assert set(outcome.failed) == {5} and outcome.done == set(range(200)) - {5}
    assert all(attempts[i] == 3 for i in sevens) and attempts[5] == 1
    assert threads[3] == {threading.main_thread().name}  # the last pass runs sequentially


def test_a_fatal_error_stops_submitting_and_every_item_not_done_gets_it() -> None:
    workers, count = 4, 5_000
    denied = PermissionDeniedError(403, "no")

    def work(item: int) -> None:
        if item == 100:
            raise denied

    outcome = run_in_passes(range(count), work, workers=workers)
    assert outcome.aborted is denied and outcome.passes == 1
    assert 100 in outcome.attempted
    # nothing past the window after the failing item was even started
    assert max(outcome.attempted) <= 100 + workers * (WINDOW_PER_WORKER + 1)
    assert set(outcome.failed) == set(range(count)) - outcome.done
    assert all(outcome.failed[i] is denied for i in range(count) if i not in outcome.done)


# ----------------------------------------------------------------------------- payloads


def test_file_payloads_behave_like_one_file_payload_per_file(tmp_path: Path) -> None:
    files = []
    for number in range(5):
        path = tmp_path / f"f{number}.dcm"
        path.write_bytes(bytes([number]) * (number + 1))
        files.append(path)
    lazy = FilePayloads(files, "application/dicom")
    eager = [file_payload(p, "application/dicom") for p in files]
    assert len(lazy) == 5
    for made, expected in zip([*lazy], eager, strict=True):
        assert (made.label, made.files, made.content_type, made.prepare, made.cleanup) == (
            expected.label, expected.files, expected.content_type, None, None,
        )  # fmt: skip
        seen: list[int] = []
        body = made.open_body(seen.append)
        try:
            data = body.read()
        finally:
            body.close()
        assert data == made.files[0].read_bytes() and sum(seen) == len(data)
    assert [p.label for p in lazy[1:3]] == ["f1.dcm", "f2.dcm"]
    assert lazy[-1].files == [files[-1]]


# ----------------------------------------------------------------------------- listings


def test_rows_read_piece_by_piece_equal_the_whole_table(client: XNATClient, session: str) -> None:
    path = f"/data/experiments/{session}/scans/ALL/files"
    text = client.get_text(path, params={"format": "json"})
    whole = client.get_result_set(path)
    assert len(whole) == 12
    for size in (1, 7, 100, len(text)):
        assert list(iter_table_rows(_pieces(text, size))) == whole


@pytest.mark.parametrize(
    "text",
    [
        '[{"Name": "a"}]',  # a bare array
        '{"ResultSet": {"totalRecords": "1", "Result": [{"Name": "a"}]}}',  # another order
        "<html><body>Login</body></html>",
        '{"ResultSet": {"Result": [{"Name": "a"}, {"Name": "b"',  # ends early
        '{"ResultSet": {"Result": [{"Name": "a"},]}}',  # trailing comma
        '{"ResultSet": {"Result": [{"Name": "a"} {"Name": "b"}]}}',  # no comma
        '{"ResultSet": {"Result": ["a"]}}',  # a row that is not an object
        '{"ResultSet": {"Result": [{"Name": }]}}',  # invalid JSON
    ],
)
def test_anything_but_a_plain_table_is_refused_for_the_ordinary_reader(text: str) -> None:
    for size in (1, 5, len(text)):
        with pytest.raises(NotStreamableError):
            list(iter_table_rows(_pieces(text, size)))


def test_cells_are_rendered_as_the_whole_table_renders_them() -> None:
    text = (
        '{"ResultSet": {"Result": [{"Name": "a b", "Size": 12, "digest": null, "x": true, '
        '"y": [1, "z"]}, {"Name": "\\u00e9/\\"q\\""}], "totalRecords": "2"}}'
    )
    assert list(iter_table_rows(_pieces(text, 3))) == parse_result_set(json.loads(text))
    assert list(iter_table_rows(['{"ResultSet": {"Result": [ ]}}'])) == []


def test_the_plan_is_the_same_as_from_the_whole_listing(client: XNATClient, session: str) -> None:
    data = f"/data/experiments/{session}"
    types = scan_types(client, data)
    plan = scan_files(client, data, label="SESS1", types=types)
    rows = ResourceFile.from_rows(client.get_result_set(f"{data}/scans/ALL/files"))
    assert [f.uri for f in plan] == [r.uri for r in rows]
    assert [f.size for f in plan] == [r.size for r in rows]
    assert [f.digest for f in plan] == [(r.digest or "").lower() or None for r in rows]
    assert {f.scan for f in plan} == set(types) and len(plan) == 12
    for item in plan:
        assert item.local == PurePosixPath(item.local_path)
        folder = f"{item.scan}-{types[item.scan or '']}"
        assert item.local_path == f"SESS1/scans/{folder}/resources/DICOM/files/{item.name}"
    assert session_resource_files(client, data, label="SESS1") == []


@pytest.mark.parametrize("kind", ["truncate", "expire_session"])
def test_a_broken_or_refused_stream_is_read_again_as_one_document(
    client: XNATClient, session: str, xnat_emulator: XNATEmulator, kind: FaultKind
) -> None:
    data = f"/data/experiments/{session}"
    types = scan_types(client, data)
    expected = scan_files(client, data, label="SESS1", types=types)
    xnat_emulator.reset_metrics()
    options: dict[str, Any] = {"truncate_at": 300} if kind == "truncate" else {}
    xnat_emulator.add_fault(LISTING, kind, times=1, **options)
    try:
        again = scan_files(client, data, label="SESS1", types=types)
    finally:
        xnat_emulator.clear_faults()
    assert again == expected
    requests = xnat_emulator.metrics()["requests"]
    assert requests["GET /data/experiments/{experiment}/scans/{scan}/files"] == 2  # one more
