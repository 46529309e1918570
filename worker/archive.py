"""Copy a finished video from its URL into S3, streaming, never holding the whole file.

The download is a `requests` stream read by boto3's managed (multipart) upload in chunks
(worker/download.py). A download that ends short, breaks off, trickles under the rate floor
or grows past the size limit raises inside the upload, which makes s3transfer abort the
multipart upload: a broken copy never becomes the object. All `requests` and `botocore`
errors are translated here and in worker/download.py into `worker.errors`.

Fetching is guarded against SSRF (worker/net/guard.py): a host that resolves to an internal
address is fetched only when that exact host is listed in ARCHIVE_ALLOWED_HOSTS, a wildcard
is not enough, and so is plain http or a port other than 443. On every redirect hop the host
is resolved once, every address checked, and the GET sent to a checked address (DNS
rebinding cannot swap it); the address the socket reached is checked again. A redirect
that leaves https is never followed.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import requests
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from boto3.s3.transfer import TransferConfig

from worker.config import (
    ARCHIVE_MAX_BYTES,
    DOWNLOAD_MIN_BYTES_PER_SECOND,
    DOWNLOAD_RATE_WINDOW_SECONDS,
    DOWNLOAD_TIMEOUT_SECONDS,
)
from worker.download import RateFloor, StreamReader, streaming, watched
from worker.errors import (
    DownloadError,
    SourceGoneError,
    SourceRefusedError,
    StorageError,
    StorageRefusedError,
)
from worker.names import MiB
from worker.net import (
    ascii_int,
    check_peer_address,
    checked_address,
    leaves_https,
    pinned_session,
    send_pinned,
    split_url,
)
from worker.store import is_job_id

logger = logging.getLogger(__name__)

# Parts of 8 MiB, at most 4 in flight and 4 buffered: about 64 MiB of buffers at worst,
# whatever the size of the video (boto3's defaults buffer 10 chunks for a stream). Chosen by
# measurement, with the settings tried and not kept: bench/RESULTS.md, part `throughput`.
PART_SIZE_BYTES = 8 * MiB
UPLOAD_CONCURRENCY = 4
BUFFERED_PARTS = 4
MAX_REDIRECTS = 5
ALLOWED_SETTING = "ARCHIVE_ALLOWED_HOSTS"
CONTENT_TYPE = "video/mp4"
GONE_STATUSES = (403, 404, 410)
# S3 error codes that say S3 refuses the upload as configured (retried all the same while
# the video exists: the operator can fix the bucket or the credentials meanwhile).
REFUSED_S3_CODES = {
    "AccessDenied",
    "NoSuchBucket",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidBucketName",
    "AllAccessDisabled",
    "InvalidArgument",
    "InvalidStorageClass",
    "KMS.NotFoundException",
    "AuthorizationHeaderMalformed",
}
# What head_object's ClientError says when the object is simply not there.
MISSING_S3_CODES = {"404", "NoSuchKey", "NotFound"}
# HEAD answers 403 for a missing key without s3:ListBucket, and always without
# s3:GetObject; archiving needs neither, so such an answer must not stop it.
FORBIDDEN_S3_CODES = {"403", "AccessDenied"}


def default_transfer_config() -> TransferConfig:
    """Transfer settings that keep an upload's memory bounded and independent of size."""
    # Imported on first use, as boto3 is (worker/deps.py): only the archive worker needs it.
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(
        multipart_threshold=PART_SIZE_BYTES,
        multipart_chunksize=PART_SIZE_BYTES,
        max_concurrency=UPLOAD_CONCURRENCY,
    )
    # Not a constructor argument of boto3's TransferConfig; s3transfer reads the attribute.
    config.max_in_memory_upload_chunks = BUFFERED_PARTS
    return config


def archive_key(prefix: str, job_id: str, name: str | None = None) -> str:
    """The object key for a job: `prefix` + the caller's `name` (its archive_key, checked at
    submit by worker/contract.py), else `prefix<job id>.mp4`; always inside `prefix`."""
    if not is_job_id(job_id):
        raise ValueError(f"not a job id: {job_id!r:.80}")
    return f"{prefix}{name}" if name else f"{prefix}{job_id}.mp4"


# S3 keeps at most this much user metadata per object (keys and values, in bytes).
S3_USER_METADATA_BYTES = 2048
# What S3 accepts as a metadata key: an HTTP header name's characters.
_HEADER_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def user_metadata(job_id: str, akool_id: str, metadata: Mapping[str, str] | None) -> dict[str, str]:
    """The object's user metadata: its job id and Akool id, with the caller's metadata when
    all of it can go: ASCII values, header-name keys that differ from ours and from each
    other in any case, within S3_USER_METADATA_BYTES in all. Otherwise none of the caller's
    goes (the job's record keeps it whole), rather than a silently partial copy."""
    ours = {"job-id": job_id, "akool-id": _safe_meta(akool_id)}
    if not metadata:
        return ours
    folded = {name.lower() for name in metadata}
    fits = (
        all(_HEADER_TOKEN.fullmatch(name) for name in metadata)
        and all(value.isascii() and value.isprintable() for value in metadata.values())
        and len(folded) == len(metadata)
        and not folded & set(ours)
        and sum(len(k) + len(v) for k, v in {**ours, **metadata}.items()) <= S3_USER_METADATA_BYTES
    )
    if not fits:
        logger.info("Job %s: its metadata is not stored on the S3 object (see the docs)", job_id)
        return ours
    return {**ours, **metadata}


def _split_source(url: str) -> tuple[str, str, int]:
    """The scheme, host and port of an http(s) URL, or SourceRefusedError."""
    try:
        return split_url(url)
    except ValueError as e:
        raise SourceRefusedError(f"the result URL {e}", url=url) from None


def check_source(url: str, patterns: Iterable[str]) -> str:
    """The address to fetch `url` from: the first its host resolves to, all of them checked.

    Refuses (SourceRefusedError) a URL that is not http(s), whose host is not in
    ARCHIVE_ALLOWED_HOSTS, resolves to an internal address without being listed exactly
    (`address_allowed`), or uses plain http or a port other than 443 without being listed
    exactly (`transport_refusal`). A failed lookup fails closed, as a DownloadError: nothing
    is sent, and the job is retried, as DNS may come back.
    """
    scheme, host, port = _split_source(url)
    try:
        return checked_address(scheme, host, port, patterns, ALLOWED_SETTING)
    except ValueError as e:
        raise SourceRefusedError(f"the result URL's {e}", url=url) from None
    except OSError as e:
        raise DownloadError(f"could not resolve the result host {host!r}", url=url) from e


def check_peer(response: requests.Response, url: str, patterns: Iterable[str]) -> None:
    """Close and refuse `response` when its connection reached an internal address that
    `address_allowed` does not allow for the URL's host."""
    try:
        check_peer_address(response, urlsplit(url).hostname or "", patterns, ALLOWED_SETTING)
    except ValueError as e:
        raise SourceRefusedError(f"the result URL's {e}", url=url) from None


def _safe_meta(value: str) -> str:
    """S3 metadata must be ASCII; keep ids readable and short."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", value)[:128]


@dataclass(frozen=True)
class ArchiveResult:
    """Where a video was stored, how big it is and its sha256."""

    uri: str
    bucket: str
    key: str
    size: int
    sha256: str


class Archiver:
    """Streams result videos into one S3 bucket under a key prefix."""

    def __init__(
        self,
        s3_client: Any,
        bucket: str,
        *,
        prefix: str = "",
        allowed_hosts: Iterable[str] = (),
        max_bytes: int = ARCHIVE_MAX_BYTES,
        session: requests.Session | None = None,
        transfer_config: TransferConfig | None = None,
        timeout: float = DOWNLOAD_TIMEOUT_SECONDS,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
        storage_class: str | None = None,
        min_rate: float = DOWNLOAD_MIN_BYTES_PER_SECOND,
        rate_window: float = DOWNLOAD_RATE_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if sse_kms_key_id and not (sse or "").startswith("aws:kms"):
            raise ValueError("sse_kms_key_id needs sse='aws:kms' or 'aws:kms:dsse'")
        self._s3 = s3_client
        self.bucket = bucket
        self.prefix = prefix
        self._allowed = tuple(allowed_hosts)
        self._max = max_bytes
        self._session = pinned_session(session)
        self._config = transfer_config or default_transfer_config()
        self._timeout = timeout
        self._sse = sse
        self._sse_kms_key_id = sse_kms_key_id
        self._storage_class = storage_class
        self._min_rate = min_rate
        self._rate_window = rate_window
        self._clock = clock

    def __repr__(self) -> str:
        return f"Archiver(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def archive(
        self,
        job_id: str,
        akool_id: str,
        url: str,
        *,
        name: str | None = None,
        metadata: Mapping[str, str] | None = None,
        on_progress: Callable[[int, int | None], None] | None = None,
        stopped: Callable[[], str | None] | None = None,
        content_type: str = CONTENT_TYPE,
    ) -> ArchiveResult:
        """Stream `url` into s3://bucket/prefix<job_id>.mp4 (prefix + `name`, the caller's
        archive_key, when given) and return where it went. The caller's `metadata` goes on
        the object when it can (`user_metadata`).

        `on_progress`, if given, is called with the bytes read so far and the expected total
        (None when the host sent no Content-Length) as bytes arrive, possibly from a
        transfer thread. `stopped`, checked about once a second, says why the copy must stop
        (the job was cancelled): the download is cut off and the multipart upload aborted.
        """
        key = archive_key(self.prefix, job_id, name)
        response = self._open(url)
        with streaming(response):
            reader = StreamReader(
                response,
                response.url or url,
                self._max,
                part_size=self._config.multipart_chunksize,
                on_progress=on_progress,
            )
            floor = RateFloor(self._min_rate, self._rate_window, self._clock)
            with watched(response, reader, floor, stopped):
                meta = user_metadata(job_id, akool_id, metadata)
                self._upload(reader, key, meta, content_type)
        uri = f"s3://{self.bucket}/{key}"
        logger.info("Archived %s (%d bytes) to %s", job_id, reader.size, uri)
        return ArchiveResult(uri, self.bucket, key, reader.size, reader.digest.hexdigest())

    def existing(self, job_id: str, name: str | None = None) -> ArchiveResult | None:
        """The job's object if it is already stored under its key (see `archive_key`) with
        its job id, else None.

        Lets a re-driven archive adopt an upload that finished before a crash instead of
        downloading again. A multipart object only exists once complete, so it is whole;
        its sha256 is not known here and is given as "".
        """
        key = archive_key(self.prefix, job_id, name)
        try:
            head = self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in FORBIDDEN_S3_CODES:
                logger.warning("May not read s3://%s/%s; archiving it again", self.bucket, key)
            if code in MISSING_S3_CODES | FORBIDDEN_S3_CODES:
                return None
            raise _storage_error(e, self.bucket, key, "read") from e
        except BotoCoreError as e:
            raise self._unreachable(key, "read") from e
        if head.get("Metadata", {}).get("job-id") != job_id:
            logger.warning("s3://%s/%s exists but belongs to another job", self.bucket, key)
            return None
        uri = f"s3://{self.bucket}/{key}"
        return ArchiveResult(uri, self.bucket, key, int(head.get("ContentLength", 0)), "")

    def abort_pending_uploads(self, job_id: str, name: str | None = None) -> int:
        """Abort the multipart uploads left pending under the job's key by an attempt that
        was stopped mid-copy; return how many. Without s3:ListBucketMultipartUploads this
        only logs a warning (a bucket lifecycle rule then has to clean them up)."""
        key = archive_key(self.prefix, job_id, name)
        try:
            listed = self._s3.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
            uploads = [u for u in listed.get("Uploads", []) if u.get("Key") == key]
            for upload in uploads:
                self._s3.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload["UploadId"]
                )
        except ClientError as e:
            if str(e.response.get("Error", {}).get("Code", "")) in FORBIDDEN_S3_CODES:
                logger.warning("May not list multipart uploads of s3://%s/%s", self.bucket, key)
                return 0
            raise _storage_error(e, self.bucket, key, "clean up") from e
        except BotoCoreError as e:
            raise self._unreachable(key, "clean up") from e
        if uploads:
            logger.info(
                "Aborted %d pending upload(s) of s3://%s/%s", len(uploads), self.bucket, key
            )
        return len(uploads)

    def _open(self, url: str) -> requests.Response:
        """GET the video from a checked address, following redirects only to allowed hosts."""
        for _ in range(MAX_REDIRECTS + 1):
            address = check_source(url, self._allowed)
            response = self._get(url, address)
            check_peer(response, url, self._allowed)  # defence in depth: the pin held
            if response.is_redirect and "Location" in response.headers:
                target = urljoin(url, response.headers["Location"])
                response.close()
                if leaves_https(url, target):
                    raise SourceRefusedError(
                        "the result URL redirects away from https; a redirect that leaves https "
                        "is never followed, not even to a host listed exactly in "
                        "ARCHIVE_ALLOWED_HOSTS",
                        url=target,
                    )
                url = target
                continue
            self._check_response(response, url)
            return response
        raise SourceRefusedError(
            f"the result URL redirected more than {MAX_REDIRECTS} times", url=url
        )

    def _get(self, url: str, address: str) -> requests.Response:
        try:
            return send_pinned(
                self._session, address, "GET", url, stream=True, timeout=self._timeout
            )
        except requests.RequestException as e:
            raise DownloadError("could not download the result video", url=url) from e

    def _check_response(self, response: requests.Response, url: str) -> None:
        status = response.status_code
        if status == 200:
            self._check_length(response, url)
            return
        response.close()
        if status in GONE_STATUSES:
            raise SourceGoneError(f"the result URL answers HTTP {status}", url=url, status=status)
        if status == 429 or status >= 500:
            raise DownloadError(f"the file host answered HTTP {status}", url=url, status=status)
        raise SourceRefusedError(f"the file host answered HTTP {status}", url=url, status=status)

    def _check_length(self, response: requests.Response, url: str) -> None:
        length = ascii_int(response.headers.get("Content-Length", ""))
        if length is not None and length > self._max:
            response.close()
            raise SourceRefusedError(
                f"the video is {length} bytes, over ARCHIVE_MAX_BYTES ({self._max})", url=url
            )

    def _extra_args(self, metadata: dict[str, str], content_type: str) -> dict[str, Any]:
        """The upload's object settings: type, metadata, and encryption and class if set."""
        extra: dict[str, Any] = {"ContentType": content_type, "Metadata": metadata}
        optional = {
            "ServerSideEncryption": self._sse,
            "SSEKMSKeyId": self._sse_kms_key_id,
            "StorageClass": self._storage_class,
        }
        extra.update({name: value for name, value in optional.items() if value})
        return extra

    def _upload(
        self, reader: StreamReader, key: str, metadata: dict[str, str], content_type: str
    ) -> None:
        extra = self._extra_args(metadata, content_type)
        try:
            self._s3.upload_fileobj(reader, self.bucket, key, ExtraArgs=extra, Config=self._config)
        except ClientError as e:
            raise _storage_error(e, self.bucket, key) from e
        except BotoCoreError as e:
            raise self._unreachable(key, "store") from e

    def _unreachable(self, key: str, action: str) -> StorageError:
        return StorageError(
            f"could not reach S3 to {action} s3://{self.bucket}/{key}", bucket=self.bucket, key=key
        )


def _storage_error(
    error: ClientError, bucket: str, key: str, action: str = "store"
) -> StorageError:
    code = str(error.response.get("Error", {}).get("Code", "Unknown"))
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    text = f"S3 refused to {action} s3://{bucket}/{key} ({code})"
    if code in REFUSED_S3_CODES:
        return StorageRefusedError(text, bucket=bucket, key=key, status=status)
    return StorageError(text, bucket=bucket, key=key, status=status)
