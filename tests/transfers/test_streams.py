"""The streamed tar body: exact length, any read size, rewind; the counting file body."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from xnat_prefect.services._transfer_streams import ProgressReader, TarStream


@pytest.mark.parametrize("read_size", [1000, 65536, -1])
def test_tar_stream_is_a_valid_tar_of_exact_length(tmp_path: Path, read_size: int) -> None:
    files = []
    for n, size in enumerate((0, 511, 512, 70_000, 1_500_000)):
        path = tmp_path / f"f{n}.dcm"
        path.write_bytes(os.urandom(size))
        files.append((path, f"S001/{'long_' * 30}{n}.dcm"))
    counted: list[int] = []
    stream = TarStream(files, counted.append)
    assert stream.seek(0, os.SEEK_END) == stream.length and stream.tell() == 0
    data = b"".join(iter(lambda: stream.read(read_size), b""))
    assert len(data) == stream.length == sum(counted)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        members = tf.getmembers()
        assert [m.name for m in members] == [name for _, name in files]
        for member, (path, _) in zip(members, files, strict=True):
            extracted = tf.extractfile(member)
            assert extracted is not None and extracted.read() == path.read_bytes()
    assert stream.md5s == {p: hashlib.md5(p.read_bytes()).hexdigest() for p, _ in files}
    assert stream.seek(0) == 0 and stream.read(512)[:3] == data[:3]  # rewind restarts
    with pytest.raises(OSError):
        stream.seek(100)


def test_progress_reader_counts_hashes_and_rewinds(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(os.urandom(200_000))
    seen: list[int] = []
    with ProgressReader(path, seen.append) as body:
        assert b"".join(body) == path.read_bytes()
        assert body.md5 == hashlib.md5(path.read_bytes()).hexdigest() and sum(seen) == 200_000
        body.seek(0)
        assert body.bytes_read == 0 and body.read(10) == path.read_bytes()[:10]
