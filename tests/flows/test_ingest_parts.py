"""Parts of the ingest without a flow run: the settler's empty-resource rule, catalog UIDs."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from xnat_prefect.client import XNATClient
from xnat_prefect.errors import SessionNotSettled, VerificationError
from xnat_prefect.flows._ingest_settle import SessionSettler, SettleOptions
from xnat_prefect.flows._ingest_verify import catalog_uids

CATALOG = """<?xml version="1.0" encoding="UTF-8"?>
<cat:DCMCatalog xmlns:cat="http://nrg.wustl.edu/catalog" ID="DICOM">
  <cat:entries>
    <cat:entry URI="a.dcm" ID="a" UID="1.2.3.1" xsi:type="cat:dcmEntry"
      xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/>
    <cat:entry URI="b.dcm" ID="b" UID="1.2.3.2"/>
  </cat:entries>
</cat:DCMCatalog>"""


def test_catalog_uids_are_read_when_listed_and_dtds_refused() -> None:
    assert catalog_uids(CATALOG) == ["1.2.3.1", "1.2.3.2"]
    assert catalog_uids(CATALOG.replace(' UID="1.2.3.1"', "").replace(' UID="1.2.3.2"', "")) is None
    with pytest.raises(VerificationError):
        catalog_uids('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>')


def test_archived_scan_listing_no_files_is_session_not_settled(lab: Any) -> None:
    lab.project("P1")
    reply = lab.rest.put(
        "/data/projects/P1/subjects/S1/experiments/S1_MR1",
        params={"xsiType": "xnat:mrSessionData", "xnat:mrSessionData/UID": "1.2.3.4"},
    )
    experiment = reply.text.strip()
    scan = lab.rest.put(
        f"/data/experiments/{experiment}/scans/1", params={"xsiType": "xnat:mrScanData"}
    )
    assert scan.is_success, scan.text
    assert lab.rest.put(f"/data/experiments/{experiment}/scans/1/resources/DICOM").is_success
    options = SettleOptions(
        study_uid="1.2.3.4",
        project="P1",
        label="S1_MR1",
        direct_archive=False,
        archive=True,
        overwrite="none",
        stall_seconds=0.5,
        max_wait_seconds=10.0,
        poll_interval_seconds=0.1,
    )
    with XNATClient(lab.emulator.url, "admin", "admin") as client:
        settler = SessionSettler(client, options, logging.getLogger("test"))
        with pytest.raises(SessionNotSettled) as caught:
            settler.run()
    assert caught.value.status == "EMPTY_RESOURCE"
    assert "scans listing 0 files: 1" in caught.value.message
