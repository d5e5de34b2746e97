"""Snapshot payloads: an export, gzip-compressed, kept in the database or in S3.

Packing spools to a temporary file (in memory up to a few MB, on disk beyond), so a large
brain's snapshot never needs its uncompressed export in memory.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from core.kernel.config import SnapshotSettings
from core.transfer import format as fmt

ENCODING = "gzip"
_SPOOL_BYTES = 8 * 1024 * 1024
_CHUNK = 1024 * 1024


@dataclass
class Packed:
    file: IO[bytes]  # positioned at 0
    size: int
    sha256: str
    counts: dict[str, int] = field(default_factory=dict)

    def read_all(self) -> bytes:
        self.file.seek(0)
        data = self.file.read()
        self.file.seek(0)
        return data


def pack(records: Iterable[dict[str, Any]]) -> Packed:
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115
    counts: dict[str, int] = {}
    # mtime=0: the same brain packs to the same bytes, whenever it is packed.
    with gzip.GzipFile(fileobj=spool, mode="wb", compresslevel=6, mtime=0) as zipped:
        for record in records:
            kind = str(record.get("kind"))
            if kind in fmt.RECORD_KINDS:
                counts[kind] = counts.get(kind, 0) + 1
            zipped.write((fmt.dumps(record) + "\n").encode())
    size = spool.tell()
    spool.seek(0)
    digest = hashlib.sha256()
    while chunk := spool.read(_CHUNK):
        digest.update(chunk)
    spool.seek(0)
    return Packed(spool, size, digest.hexdigest(), counts)


def sha256_of(file: IO[bytes]) -> str:
    file.seek(0)
    digest = hashlib.sha256()
    while chunk := file.read(_CHUNK):
        digest.update(chunk)
    file.seek(0)
    return digest.hexdigest()


def unpack(file: IO[bytes]) -> Iterator[fmt.Line]:
    """The records of a packed payload, read lazily."""
    file.seek(0)
    with gzip.GzipFile(fileobj=file, mode="rb") as zipped:
        yield from fmt.parse_lines(io.BufferedReader(zipped))


def spool_bytes(data: bytes) -> IO[bytes]:
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115
    spool.write(data)
    spool.seek(0)
    return spool


# -- S3 --------------------------------------------------------------------------------------


def s3_url(settings: SnapshotSettings, brain_id: str, snapshot_id: str) -> str:
    """Where a new snapshot goes: the bucket is part of what is stored, so snapshots made
    before the bucket setting changed stay readable."""
    return f"s3://{settings.bucket}/{settings.prefix}{brain_id}/{snapshot_id}.jsonl.gz"


def _split(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


def _client(settings: SnapshotSettings) -> Any:
    import boto3  # lazy: only S3 mode pays for it

    return boto3.client("s3", region_name=settings.region, endpoint_url=settings.endpoint_url)


def upload(settings: SnapshotSettings, url: str, packed: Packed) -> None:
    bucket, key = _split(url)
    packed.file.seek(0)
    # upload_fileobj may close the file it is given (s3transfer does when done): nothing is
    # read from it afterwards.
    _client(settings).upload_fileobj(
        packed.file, bucket, key, ExtraArgs={"ContentType": "application/gzip"}
    )


def download(settings: SnapshotSettings, url: str) -> IO[bytes]:
    bucket, key = _split(url)
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115
    body = _client(settings).get_object(Bucket=bucket, Key=key)["Body"]
    shutil.copyfileobj(body, spool, _CHUNK)
    spool.seek(0)
    return spool


def delete_object(settings: SnapshotSettings, url: str) -> None:
    bucket, key = _split(url)
    _client(settings).delete_object(Bucket=bucket, Key=key)
