"""Emulator file routes: listings, uploads, downloads, archives, deletes (real sockets)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile

import httpx
import pytest

from tests.testing._support import logged_in
from xnat_prefect.testing import XNATEmulator
from xnat_prefect.testing.routes._cascade import resource_dir

OCTET = {"Content-Type": "application/octet-stream"}
SESSION = "/data/experiments/XNAT_E00001"
FILE_COLUMNS = [
    "Name",
    "Size",
    "URI",
    "collection",
    "file_tags",
    "file_format",
    "file_content",
    "cat_ID",
    "digest",
]


def _seed(emu: XNATEmulator, project: str = "P1") -> None:
    """Project, subject S1, session SESS1, scans 1 (T1w), 2 (T2 w/FLAIR), 3 (T1w), over HTTP."""
    with logged_in(emu, timeout=30) as client:
        assert client.put(f"/data/projects/{project}").status_code == 200
        assert client.put(f"/data/projects/{project}/subjects/S1").text == "XNAT_S00001"
        session = client.put(
            f"/data/projects/{project}/subjects/S1/experiments/SESS1",
            params={"xsiType": "xnat:mrSessionData"},
        )
        assert session.text == "XNAT_E00001"
        for scan_id, scan_type in (("1", "T1w"), ("2", "T2 w/FLAIR"), ("3", "T1w")):
            scan = client.put(
                f"{SESSION}/scans/{scan_id}",
                params={"xsiType": "xnat:mrScanData", "type": scan_type},
            )
            assert scan.status_code == 200, scan.text


def _put(client: httpx.Client, url: str, data: bytes, **params: str) -> httpx.Response:
    return client.put(url, content=data, headers=OCTET, params=params)


def _files(reply: httpx.Response) -> list[dict[str, str]]:
    assert reply.status_code == 200, reply.text
    rows: list[dict[str, str]] = reply.json()["ResultSet"]["Result"]
    return rows


def _resource_id(client: httpx.Client, parent: str, label: str) -> str:
    rows = _files(client.get(f"{parent}/resources", params={"all": "true"}))
    return next(r["xnat_abstractresource_id"] for r in rows if r["label"] == label)


def _scan_files(client: httpx.Client) -> None:
    for scan, name, data in (
        ("1", "a/1.dcm", b"one"),
        ("2", "2.dcm", b"two"),
        ("3", "3.dcm", b"3"),
    ):
        reply = _put(client, f"{SESSION}/scans/{scan}/resources/DICOM/files/{name}", data)
        assert reply.status_code == 200, reply.text


def test_raw_upload_autocreates_resource_and_lists_with_single_uri(
    xnat_emulator: XNATEmulator,
) -> None:
    _seed(xnat_emulator)
    with logged_in(xnat_emulator, timeout=30) as client:
        base = "/data/projects/P1/subjects/S1/experiments/SESS1/scans/1/resources/DICOM"
        reply = _put(client, f"{base}/files/sub/dir/0001.dcm", b"dicom-bytes")
        assert reply.status_code == 200 and reply.text == ""
        rid = _resource_id(client, SESSION, "DICOM")
        listing = client.get(f"{base}/files")
        envelope = listing.json()["ResultSet"]
        assert "totalRecords" not in envelope and envelope["title"] == "Files"
        assert envelope["Columns"] == [{"key": "URI", "serverRoot": ""}]
        (row,) = envelope["Result"]
        assert list(row) == FILE_COLUMNS
        assert row["URI"] == (
            f"/data/projects/P1/subjects/XNAT_S00001/experiments/XNAT_E00001/scans/1/resources/"
            f"{rid}/files/sub/dir/0001.dcm"
        )
        assert row["Name"] == "0001.dcm" and row["Size"] == "11" and row["collection"] == "DICOM"
        assert row["cat_ID"] == rid and row["digest"] == hashlib.md5(b"dicom-bytes").hexdigest()
        flat = _files(client.get(f"{SESSION}/scans/1/resources/{rid}/files"))
        assert flat[0]["URI"] == f"{SESSION}/scans/1/resources/{rid}/files/sub/dir/0001.dcm"
        assert client.get(flat[0]["URI"]).content == b"dicom-bytes"
        resources = client.get(f"{SESSION}/scans/1/resources").json()["ResultSet"]["Result"]
        assert resources[0]["file_count"] == "1" and resources[0]["file_size"] == "11"


def test_upload_body_rules(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    url = "/data/projects/P1/resources/R/files/x.bin"
    with logged_in(xnat_emulator, timeout=30) as client:
        no_type = client.put(url, content=b"data")  # no Content-Type: XNAT sees no file
        assert no_type.status_code == 400 and "inbody=true" in no_type.text
        empty = client.put(url, content=b"", headers=OCTET)
        assert empty.status_code == 400 and "provide any data" in empty.text
        json_body = client.put(url, content=b"{}", headers={"Content-Type": "application/json"})
        assert json_body.status_code == 400
        inbody = client.put(
            url,
            content=b"{}",
            headers={"Content-Type": "application/json"},
            params={"inbody": "true"},
        )
        assert inbody.status_code == 200
        mixed = client.put(url, files={"f": ("x.bin", b"1")}, params={"inbody": "true"})
        assert mixed.status_code == 406
        unnamed = client.post(
            "/data/projects/P1/resources/R/files",
            content=b"PK",
            headers={"Content-Type": "application/zip"},
        )
        assert unnamed.status_code == 200
        names = sorted(r["Name"] for r in _files(client.get("/data/projects/P1/resources/R/files")))
        assert names == ["upload.zip", "x.bin"]


def test_multipart_upload_uses_part_filename_or_path(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    with logged_in(xnat_emulator, timeout=30) as client:
        base = "/data/experiments/XNAT_E00001/resources/MP/files"
        assert (
            client.post(base, files={"anything": ("C:\\dir\\from-part.txt", b"p1")}).status_code
            == 200
        )
        assert (
            client.put(f"{base}/deep/named.txt", files={"x": ("ignored.txt", b"p2")}).status_code
            == 200
        )
        two = client.post(f"{base}/batch", files=[("a", ("a.txt", b"A")), ("b", ("b.txt", b"B"))])
        assert two.status_code == 200
        rows = _files(client.get(base))
        assert sorted(r["URI"].split("/files/")[1] for r in rows) == [
            "batch/a.txt",
            "batch/b.txt",
            "deep/named.txt",
            "from-part.txt",
        ]
        assert client.get(f"{base}/deep/named.txt").content == b"p2"


def test_duplicates_reply_and_overwrite(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    url = "/data/projects/P1/resources/R/files/f.txt"
    with logged_in(xnat_emulator, timeout=30) as client:
        assert _put(client, url, b"first").status_code == 200
        again = _put(client, url, b"second")
        assert again.status_code == 200
        assert again.headers["content-type"].startswith("text/html")
        assert json.loads(again.text) == {"duplicates": ["f.txt"]}
        assert client.get(url).content == b"first"
        replaced = _put(client, url, b"second!", overwrite="true")
        assert replaced.status_code == 200 and replaced.text == ""
        assert client.get(url).content == b"second!"
        (row,) = _files(client.get("/data/projects/P1/resources/R/files"))
        assert row["Size"] == "7" and row["digest"] == hashlib.md5(b"second!").hexdigest()


def _zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_extract_zip_and_tar_gz_keep_folders(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    base = "/data/experiments/XNAT_E00001/resources/EXTRACTED/files"
    tar_buffer = io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("t/inner.txt")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"tar"))
    with logged_in(xnat_emulator, timeout=30) as client:
        zipped = _zip_bytes({"z/one.txt": b"1", "z/two/three.txt": b"23"})
        reply = client.put(
            f"{base}/bundle.zip",
            content=zipped,
            headers={"Content-Type": "application/zip"},
            params={"extract": "true"},
        )
        assert reply.status_code == 200, reply.text
        multipart = client.post(
            f"{base}/sub",
            files={"f": ("pack.tar.gz", tar_buffer.getvalue())},
            params={"extract": "true"},
        )
        assert multipart.status_code == 200, multipart.text
        paths = sorted(r["URI"].split("/files/")[1] for r in _files(client.get(base)))
        assert paths == ["t/inner.txt", "z/one.txt", "z/two/three.txt"]  # into the resource root
        assert client.get(f"{base}/z/two/three.txt").content == b"23"
        kept = _put(client, f"{base}/stored.zip", zipped)  # no extract: stored as is
        assert kept.status_code == 200
        assert client.get(f"{base}/stored.zip").content == zipped


def test_extract_refuses_entries_escaping_the_resource(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    state = xnat_emulator.state
    assert state is not None
    base = "/data/projects/P1/resources/SAFE/files"
    evil_tar = io.BytesIO()
    with tarfile.open(fileobj=evil_tar, mode="w") as archive:
        link = tarfile.TarInfo("link")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        archive.addfile(link)
    with logged_in(xnat_emulator, timeout=30) as client:
        assert _put(client, f"{base}/keep.txt", b"k").status_code == 200
        slip = _zip_bytes({"ok.txt": b"fine", "../../escaped.txt": b"evil"})
        reply = client.put(
            f"{base}/evil.zip",
            content=slip,
            headers={"Content-Type": "application/zip"},
            params={"extract": "true"},
        )
        assert reply.status_code == 400 and "leaves the resource" in reply.text
        absolute = _zip_bytes({"/abs.txt": b"evil"})
        assert (
            client.put(
                f"{base}/abs.zip", content=absolute, headers=OCTET, params={"extract": "true"}
            ).status_code
            == 400
        )
        linked = client.put(
            f"{base}/l.tar", content=evil_tar.getvalue(), headers=OCTET, params={"extract": "true"}
        )
        assert linked.status_code == 400
        assert [r["Name"] for r in _files(client.get(base))] == ["keep.txt"]
    archive_root = state.store.archive_dir
    assert not list(archive_root.parent.rglob("escaped.txt"))
    assert not list(archive_root.rglob("ok.txt"))  # nothing half-extracted


def test_download_full_range_types_and_missing(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    base = "/data/projects/P1/subjects/S1/resources/DOCS/files"
    payload = bytes(range(256)) * 40
    with logged_in(xnat_emulator, timeout=30) as client:
        assert _put(client, f"{base}/blob.dcm", payload).status_code == 200
        assert _put(client, f"{base}/readme.txt", b"hello").status_code == 200
        whole = client.get(f"{base}/blob.dcm")
        assert whole.status_code == 200 and whole.content == payload
        assert whole.headers["content-type"] == "application/octet-stream"
        assert whole.headers["content-length"] == str(len(payload))
        assert whole.headers["content-disposition"].startswith("attachment")
        assert 'filename="blob.dcm"' in whole.headers["content-disposition"]
        # XNAT ignores Range (200, whole file); the opt-in honor_range answers 206
        ignored = client.get(f"{base}/blob.dcm", headers={"Range": "bytes=100-299"})
        assert ignored.status_code == 200 and ignored.content == payload
        xnat_emulator.set_options(honor_range=True)
        part = client.get(f"{base}/blob.dcm", headers={"Range": "bytes=100-299"})
        assert part.status_code == 206 and part.content == payload[100:300]
        assert part.headers["content-range"] == f"bytes 100-299/{len(payload)}"
        tail = client.get(
            "/data/subjects/XNAT_S00001/resources/DOCS/files/blob.dcm",
            headers={"Range": "bytes=-10"},
        )
        assert tail.status_code == 206 and tail.content == payload[-10:]
        text = client.get(f"{base}/readme.txt")
        assert text.headers["content-type"].startswith("text/plain") and text.text == "hello"
        missing = client.get(f"{base}/nope.txt")
        assert missing.status_code == 404 and "Unable to find file." in missing.text
        assert (
            client.get(f"{base}/nope.txt", params={"accept-not-found": "true"}).status_code == 204
        )
        head = client.head(f"{base}/blob.dcm")
        assert head.status_code == 200 and head.headers["content-length"] == str(len(payload))


def test_zip_download_layout_is_valid_and_streamed(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    with logged_in(xnat_emulator, timeout=30) as client:
        _scan_files(client)
        assert _put(client, f"{SESSION}/resources/NOTES/files/n.txt", b"note").status_code == 200
        reply = client.get(f"{SESSION}/scans/ALL/files", params={"format": "zip"})
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "application/zip"
        assert reply.headers["content-disposition"] == 'attachment; filename="SESS1.zip"'
        assert "content-length" not in reply.headers
        archive = zipfile.ZipFile(io.BytesIO(reply.content))
        assert archive.testzip() is None
        assert sorted(archive.namelist()) == [
            "SESS1/scans/1-T1w/resources/DICOM/files/a/1.dcm",
            "SESS1/scans/2-T2_w_FLAIR/resources/DICOM/files/2.dcm",
            "SESS1/scans/3-T1w/resources/DICOM/files/3.dcm",
        ]
        assert archive.read("SESS1/scans/2-T2_w_FLAIR/resources/DICOM/files/2.dcm") == b"two"
        session = zipfile.ZipFile(
            io.BytesIO(
                client.get(f"{SESSION}/resources/NOTES/files", params={"format": "zip"}).content
            )
        )
        assert session.namelist() == ["SESS1/resources/NOTES/files/n.txt"]
        every = client.get(f"{SESSION}/files", params={"format": "zip", "all": "true"})
        assert len(zipfile.ZipFile(io.BytesIO(every.content)).namelist()) == 4
        simple = client.get(
            f"{SESSION}/scans/1/files", params={"format": "zip", "structure": "simplified"}
        )
        assert zipfile.ZipFile(io.BytesIO(simple.content)).namelist() == [
            "SESS1/scans/1-T1w/DICOM/a/1.dcm"
        ]
        improved = client.get(
            f"{SESSION}/scans/2/files", params={"format": "zip", "structure": "improved"}
        )
        assert zipfile.ZipFile(io.BytesIO(improved.content)).namelist() == [
            "scans/2_T2 w_FLAIR/DICOM/2.dcm"
        ]
        stored = client.get(
            f"{SESSION}/scans/1/files", params={"format": "zip", "compression": "0"}
        )
        (info,) = zipfile.ZipFile(io.BytesIO(stored.content)).infolist()
        assert info.compress_type == zipfile.ZIP_STORED


def test_subject_and_project_archive_layouts(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    with logged_in(xnat_emulator, timeout=30) as client:
        assert (
            _put(client, "/data/projects/P1/subjects/S1/resources/SR/files/s.txt", b"s").status_code
            == 200
        )
        assert _put(client, "/data/projects/P1/resources/PR/files/p/q.txt", b"p").status_code == 200
        subject = client.get(
            "/data/subjects/XNAT_S00001/resources/SR/files", params={"format": "zip"}
        )
        assert subject.headers["content-disposition"] == 'attachment; filename="S1.zip"'
        assert zipfile.ZipFile(io.BytesIO(subject.content)).namelist() == [
            "S1/resources/SR/files/s.txt"
        ]
        project = client.get("/data/projects/P1/files", params={"format": "zip"})
        assert zipfile.ZipFile(io.BytesIO(project.content)).namelist() == [
            "P1/resources/PR/files/p/q.txt"
        ]


@pytest.mark.parametrize(("fmt", "mode"), [("tar", "r:"), ("tar.gz", "r:gz")])
def test_tar_downloads(xnat_emulator: XNATEmulator, fmt: str, mode: str) -> None:
    _seed(xnat_emulator)
    with logged_in(xnat_emulator, timeout=30) as client:
        _scan_files(client)
        big = bytes(range(256)) * 3000  # crosses several tar blocks and read chunks
        assert (
            _put(client, f"{SESSION}/scans/3/resources/DICOM/files/big.dcm", big).status_code == 200
        )
        reply = client.get(f"{SESSION}/scans/1,3/files", params={"format": fmt})
        assert reply.status_code == 200
        assert reply.headers["content-disposition"] == f'attachment; filename="SESS1.{fmt}"'
        with tarfile.open(fileobj=io.BytesIO(reply.content), mode=mode) as archive:  # type: ignore[call-overload]
            names = archive.getnames()
            member = archive.extractfile("SESS1/scans/3-T1w/resources/DICOM/files/big.dcm")
            assert member is not None and member.read() == big
        assert sorted(names) == [
            "SESS1/scans/1-T1w/resources/DICOM/files/a/1.dcm",
            "SESS1/scans/3-T1w/resources/DICOM/files/3.dcm",
            "SESS1/scans/3-T1w/resources/DICOM/files/big.dcm",
        ]


@pytest.mark.parametrize(
    ("selector", "scans"),
    [
        ("ALL", ["1", "2", "3"]),
        ("*", ["1", "2", "3"]),
        ("1,2", ["1", "2"]),
        ("2", ["2"]),
        ("T1w", ["1", "3"]),
        ("T2 w[SLASH]FLAIR", ["2"]),
        ("T2 w[SLASH]FLAIR,1", ["1", "2"]),
    ],
)
def test_scan_selectors_and_multi_resource_uris(
    xnat_emulator: XNATEmulator, selector: str, scans: list[str]
) -> None:
    _seed(xnat_emulator)
    with logged_in(xnat_emulator, timeout=30) as client:
        _scan_files(client)
        rows = _files(client.get(f"{SESSION}/scans/{selector}/files"))
        assert sorted(r["URI"].split("/scans/")[1].split("/")[0] for r in rows) == scans
        for row in rows:  # several resources: stored form, without /data
            assert row["URI"].startswith("/experiments/XNAT_E00001/scans/")
            assert f"/resources/{row['cat_ID']}/files/" in row["URI"]
            assert client.get("/data" + row["URI"]).status_code == 200
        via_resource = _files(client.get(f"{SESSION}/scans/{selector}/resources/DICOM/files"))
        assert len(via_resource) == len(scans)


def test_uri_forms_for_project_subject_and_comma_resource_lists(
    xnat_emulator: XNATEmulator,
) -> None:
    _seed(xnat_emulator)
    with logged_in(xnat_emulator, timeout=30) as client:
        _put(client, "/data/projects/P1/resources/A/files/a.txt", b"a")
        _put(client, "/data/projects/P1/resources/B/files/b.txt", b"b")
        _put(client, "/data/projects/P1/subjects/S1/resources/C/files/c.txt", b"c")
        rid_a = _resource_id(client, "/data/projects/P1", "A")
        rid_b = _resource_id(client, "/data/projects/P1", "B")
        rid_c = _resource_id(client, "/data/projects/P1/subjects/S1", "C")
        single = _files(client.get("/data/projects/P1/resources/A/files"))
        assert single[0]["URI"] == f"/data/projects/P1/resources/{rid_a}/files/a.txt"
        both = _files(client.get(f"/data/projects/P1/resources/A,{rid_b}/files"))
        assert [r["URI"] for r in both] == [
            f"/projects/P1/resources/{rid_a}/files/a.txt",
            f"/projects/P1/resources/{rid_b}/files/b.txt",
        ]
        one_of_all = _files(client.get("/data/subjects/XNAT_S00001/files"))  # <parent>/files: multi
        assert (
            one_of_all[0]["URI"]
            == f"/projects/P1/subjects/XNAT_S00001/resources/{rid_c}/files/c.txt"
        )
        csv = client.get("/data/projects/P1/resources/A/files", params={"format": "csv"})
        assert csv.text.splitlines()[0] == ",".join(FILE_COLUMNS)
        unknown = client.get("/data/projects/P1/resources/NOPE/files")
        assert unknown.status_code == 404


def test_empty_selection_archive_is_404(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    with logged_in(xnat_emulator, timeout=30) as client:
        client.put(f"{SESSION}/scans/1/resources/EMPTY")
        assert client.get(f"{SESSION}/scans/1/files", params={"format": "zip"}).status_code == 404
        accepted = client.get(
            f"{SESSION}/scans/1/files", params={"format": "zip", "accept-not-found": "true"}
        )
        assert accepted.status_code == 204
        assert _files(client.get(f"{SESSION}/scans/1/resources/EMPTY/files")) == []


def test_delete_file_folder_and_no_match(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    state = xnat_emulator.state
    assert state is not None
    base = "/data/projects/P1/resources/R/files"
    with logged_in(xnat_emulator, timeout=30) as client:
        for name in ("top.txt", "sub/folder/x.txt", "sub/folder/y.txt", "sub/other.txt"):
            assert _put(client, f"{base}/{name}", b"12345").status_code == 200
        rid = int(_resource_id(client, "/data/projects/P1", "R"))
        assert client.delete(f"{base}/top.txt").status_code == 200
        assert client.delete(f"{base}/sub/folder").status_code == 200
        assert [r["URI"].split("/files/")[1] for r in _files(client.get(base))] == ["sub/other.txt"]
        assert not (resource_dir(state, rid) / "sub" / "folder").exists()
        assert not (resource_dir(state, rid) / "top.txt").exists()
        missing = client.delete(f"{base}/top.txt")
        assert missing.status_code == 404 and "No matched files" in missing.text
        row = client.get("/data/projects/P1/resources").json()["ResultSet"]["Result"][0]
        assert row["file_count"] == "1" and row["file_size"] == "5"
        assert (
            client.delete(f"{base}/sub/other.txt", params={"removeFiles": "false"}).status_code
            == 200
        )
        assert (resource_dir(state, rid) / "sub" / "other.txt").is_file()
    xnat_emulator.add_user("member1", "pw")
    with logged_in(xnat_emulator, timeout=30) as admin:
        admin.put("/data/projects/P1/users/Members/member1")
        _put(admin, f"{base}/z.txt", b"z")
    with logged_in(xnat_emulator, "member1", "pw", timeout=30) as member:
        assert member.delete(f"{base}/z.txt").status_code == 403
        assert _put(member, f"{base}/by-member.txt", b"m").status_code == 200


def test_folder_listing_wildcards_and_file_attributes(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    base = f"{SESSION}/resources/R/files"
    with logged_in(xnat_emulator, timeout=30) as client:
        _put(client, f"{base}/d/one.dcm", b"1", format="DICOM", content="RAW", tags="t1")
        _put(client, f"{base}/d/e/two.dcm", b"2")
        _put(client, f"{base}/three.txt", b"3")
        folder = _files(client.get(f"{base}/d/"))
        assert sorted(r["Name"] for r in folder) == ["one.dcm", "two.dcm"]
        shallow = _files(client.get(f"{base}/d/", params={"recursive": "false"}))
        assert [r["Name"] for r in shallow] == ["one.dcm"]
        assert shallow[0]["file_format"] == "DICOM" and shallow[0]["file_content"] == "RAW"
        assert shallow[0]["file_tags"] == "t1"
        pattern = _files(client.get(f"{base}/*.txt"))
        assert [r["Name"] for r in pattern] == ["three.txt"]
        by_format = _files(client.get(base, params={"file_format": "DICOM"}))
        assert [r["Name"] for r in by_format] == ["one.dcm"]
        resource = client.get(f"{SESSION}/resources").json()["ResultSet"]["Result"][0]
        assert resource["format"] == "DICOM"  # auto-created with the upload's attributes


def test_update_stats_false_keeps_cached_counts(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    with logged_in(xnat_emulator, timeout=30) as client:
        base = "/data/projects/P1/resources/R/files"
        _put(client, f"{base}/a", b"aaaa")
        _put(client, f"{base}/b", b"bb", **{"update-stats": "false"})
        row = client.get("/data/projects/P1/resources").json()["ResultSet"]["Result"][0]
        assert (row["file_count"], row["file_size"]) == ("1", "4")
        assert len(_files(client.get(base))) == 2


def test_zip_member_access_and_list_contents(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    base = "/data/projects/P1/resources/Z/files"
    with logged_in(xnat_emulator, timeout=30) as client:
        _put(client, f"{base}/pack.zip", _zip_bytes({"in/a.txt": b"inner-a"}))
        member = client.get(f"{base}/pack.zip!in/a.txt")
        assert member.status_code == 200 and member.content == b"inner-a"
        listed = client.get(f"{base}/pack.zip", params={"listContents": "true"})
        assert listed.json()["ResultSet"]["Result"] == [{"File Name": "in/a.txt", "Size": "7"}]
        assert client.get(f"{base}/pack.zip!nope").status_code == 404


def test_single_file_with_format_zip_is_wrapped(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    with logged_in(xnat_emulator, timeout=30) as client:
        _put(client, "/data/projects/P1/resources/R/files/x/y.txt", b"y")
        reply = client.get("/data/projects/P1/resources/R/files/x/y.txt", params={"format": "zip"})
        assert zipfile.ZipFile(io.BytesIO(reply.content)).namelist() == ["y.txt"]
