"""The shared store as an S3 bucket (AWS, or an S3-compatible server such as MinIO or Ceph), through boto3.

`open_store` imports this module only for ``s3://bucket/prefix`` URLs, so a deployment whose store is a
folder never imports boto3. Credentials and region come from boto3's own configuration (the standard
``AWS_*`` environment variables, ``~/.aws``, an instance role); the endpoint of an S3-compatible server is
passed in by the caller, never read here.

The guarantees are `BlobStore`'s: an S3 PUT (and a multipart upload's completion) replaces an object
atomically, so a reader sees the old object or the whole new one; a download goes to a temporary file beside
its target and is renamed into place; s3transfer pins a multi-part download to one ETag, so an object
replaced mid-download fails the download instead of mixing two versions.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from boto3.exceptions import S3TransferFailedError, S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)

from foundation.shared_store import COMPLETE, StoreError, checked_key

# Fail within seconds when the endpoint is down (botocore's defaults wait a minute per attempt), while still
# riding out a dropped connection or a throttled request.
_CONFIG = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"})
_MISSING = {"404", "NoSuchKey", "NotFound"}


class S3Store:
    """A store that is the keys under `prefix` in the bucket `bucket`."""

    page_size = 1000  # keys per list request, and per batch delete (S3's maximum for both)

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None) -> None:
        self.bucket = bucket
        self.prefix = checked_key(prefix.strip("/")) if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._local = threading.local()
        self._bucket_seen = False

    def _client(self) -> Any:
        # One client per process and thread: a client made before a fork would share its connection pool
        # with the child (Celery forks its workers), and boto3's sessions are not thread-safe.
        client = getattr(self._local, "client", None)
        if client is None or self._local.pid != os.getpid():
            session = boto3.session.Session()
            client = session.client("s3", endpoint_url=self.endpoint_url, config=_CONFIG)
            self._local.client, self._local.pid = client, os.getpid()
        return client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{checked_key(key)}" if self.prefix else checked_key(key)

    def put_file(self, local: Path, key: str) -> None:
        with self._errors(key):
            self._client().upload_file(str(local), self.bucket, self._key(key))

    def get_file(self, key: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex}.tmp")
        try:
            with self._errors(key):
                self._client().download_file(self.bucket, self._key(key), str(tmp))
            os.replace(tmp, local)
        finally:
            tmp.unlink(missing_ok=True)

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            with self._errors(key):
                head: dict[str, Any] = self._client().head_object(Bucket=self.bucket, Key=self._key(key))
                return head
        except _Missing:
            return None

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def modified(self, key: str) -> float | None:
        head = self._head(key)
        return None if head is None else float(head["LastModified"].timestamp())

    def list(self, prefix: str) -> list[str]:
        return sorted(key.removeprefix(f"{self.prefix}/") if self.prefix else key for key in self._keys(prefix))

    def _keys(self, prefix: str) -> Iterator[str]:
        """Full keys (the store's prefix included) under the folder `prefix`, one page at a time."""
        pages = (
            self._client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=f"{self._key(prefix)}/", PaginationConfig={"PageSize": self.page_size})
        )
        with self._errors(prefix):
            for page in pages:
                yield from (item["Key"] for item in page.get("Contents", ()))

    def delete(self, prefix: str) -> None:
        # Markers first: a deleter killed half-way leaves a folder that looks half-published (pruned later),
        # never one that looks whole but lacks files.
        keys = sorted([self._key(prefix), *self._keys(prefix)], key=lambda k: not k.endswith(f"/{COMPLETE}"))
        for start in range(0, len(keys), self.page_size):
            batch = [{"Key": key} for key in keys[start : start + self.page_size]]
            with self._errors(prefix):
                answer = self._client().delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            if failed := answer.get("Errors"):
                first = failed[0]
                raise StoreError(
                    f"the shared store {self.url} refused to delete {len(failed)} key(s) under {prefix}, "
                    f"{first.get('Key')} first: {first.get('Message') or first.get('Code')}"
                )

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """boto3's exceptions as sentences a person can act on (the traceback stays out of their way)."""
        where = self.endpoint_url or "AWS"
        try:
            yield
        except (NoCredentialsError, PartialCredentialsError):
            raise StoreError(
                f"no credentials for the shared store {self.url}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) for every process"
            ) from None
        except (EndpointConnectionError, ConnectionError) as exc:
            raise StoreError(f"the shared store {self.url} cannot be reached at {where}: {exc}") from None
        except ParamValidationError as exc:
            raise StoreError(f"the shared store {self.url} refused {key}: {exc}") from None
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                self._check_bucket()
                raise _Missing(f"the shared store {self.url} has no {key}") from None
            if code == "NoSuchBucket":
                raise StoreError(f"the shared store's bucket {self.bucket} does not exist at {where}") from None
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise StoreError(
                    f"the shared store {self.url} denied access to {key} ({code}): check the credentials"
                ) from None
            raise StoreError(f"the shared store {self.url} failed on {key}: {code or exc}") from None
        except (S3UploadFailedError, S3TransferFailedError) as exc:
            # boto3 wraps the ClientError of an upload in a message; the bucket's absence is the usual cause
            text = str(exc)
            if "NoSuchBucket" in text:
                raise StoreError(f"the shared store's bucket {self.bucket} does not exist at {where}") from None
            raise StoreError(f"the shared store {self.url} failed on {key}: {text}") from None
        except BotoCoreError as exc:
            raise StoreError(f"the shared store {self.url} failed on {key}: {exc}") from None

    def _check_bucket(self) -> None:
        """StoreError if the bucket does not exist. A HEAD of a key answers a bare 404 whether the key or the
        whole bucket is missing; a misnamed bucket must not pass for an empty one, so the first miss asks."""
        if self._bucket_seen:
            return
        try:
            self._client().head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in _MISSING | {"NoSuchBucket"}:
                where = self.endpoint_url or "AWS"
                raise StoreError(f"the shared store's bucket {self.bucket} does not exist at {where}") from None
            return  # no right to ask (403): the object's own answer stands
        except BotoCoreError:
            return
        self._bucket_seen = True


class _Missing(StoreError):
    """No such key: a StoreError for callers, told apart by `exists` and `modified`."""


def open_s3_store(url: str, *, endpoint_url: str | None = None) -> S3Store:
    """The store ``s3://bucket/prefix`` names (the prefix may be empty)."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise StoreError(f"{url!r} names no bucket (expected s3://bucket/prefix)")
    return S3Store(bucket, prefix, endpoint_url=endpoint_url)
