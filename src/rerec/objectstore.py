"""Inputs from object storage: a dataset or a model folder given as ``s3://bucket/prefix/``.

The pipelines take their data and base model as URIs. A stage that receives ``s3://...`` downloads every
object under the prefix into a local folder (keys relative to the prefix become paths) and works on that.
Credentials and endpoint come from the environment only: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
and ``MLFLOW_S3_ENDPOINT_URL`` (the ``rerec-s3`` secret on a cluster; boto3's own ``AWS_ENDPOINT_URL_S3``
also works). The download is atomic: the folder appears complete or not at all.

:func:`s3_failure` says which failed S3 requests are worth another try (the MLflow artifact store's uploads, retried
by :func:`rerec.tracking.with_retries`).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from rerec.errors import InputError, RerecError

S3_SCHEME = "s3://"


def is_s3_uri(text: str | os.PathLike | None) -> bool:
    return isinstance(text, str) and text.startswith(S3_SCHEME)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b/")``: the prefix of a folder, so that ``a/b`` never
    matches the objects of ``a/bc``."""
    if not is_s3_uri(uri):
        raise InputError(f"'{uri}' is not an s3:// URI", fix="write it as s3://bucket/folder/")
    bucket, _, key = uri[len(S3_SCHEME):].partition("/")
    if not bucket:
        raise InputError(f"'{uri}' names no bucket", fix="write it as s3://bucket/folder/")
    key = key.strip("/")
    return bucket, f"{key}/" if key else ""


def s3_client():
    import boto3

    endpoint = os.environ.get("MLFLOW_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3") or None
    return boto3.client("s3", endpoint_url=endpoint)


def _failure(uri: str, exc: Exception) -> RerecError:
    from botocore.exceptions import ClientError, NoCredentialsError

    from rerec.security import redact_value

    if isinstance(exc, NoCredentialsError):
        return RerecError(f"Cannot read {uri}: no S3 credentials in the environment. Fix: set AWS_ACCESS_KEY_ID and "
                          "AWS_SECRET_ACCESS_KEY (on a cluster: the rerec-s3 secret) and MLFLOW_S3_ENDPOINT_URL for an "
                          "S3-compatible store.")
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            return RerecError(f"Cannot read {uri}: the bucket does not exist at "
                              f"{os.environ.get('MLFLOW_S3_ENDPOINT_URL') or 'AWS S3'}. Fix: check the bucket name "
                              "and MLFLOW_S3_ENDPOINT_URL.")
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
            return RerecError(f"Cannot read {uri}: S3 refused the credentials ({code}). Fix: check AWS_ACCESS_KEY_ID/"
                              "AWS_SECRET_ACCESS_KEY (the rerec-s3 secret) and the bucket policy.")
    return RerecError(f"Cannot read {uri}: {type(exc).__name__}: {redact_value(str(exc))[:300]}. Fix: check that the "
                      "S3 endpoint (MLFLOW_S3_ENDPOINT_URL) is reachable, then rerun.")


def download_prefix(uri: str, dest: str | os.PathLike, client=None) -> dict:
    """Copy every object under the folder ``uri`` into ``dest`` (written atomically); returns
    ``{"uri", "files", "bytes"}``. Refuses an empty prefix and keys that would escape ``dest``."""
    from botocore.exceptions import BotoCoreError, ClientError

    from rerec.io import atomic_dir

    bucket, prefix = split_s3_uri(uri)
    client = client or s3_client()
    try:
        keys = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys += [(o["Key"], int(o["Size"])) for o in page.get("Contents", []) if not o["Key"].endswith("/")]
        if not keys:
            raise InputError(f"{uri} holds no files", fix="upload the dataset or model folder under that prefix, "
                             "or correct the URI (it names a folder: s3://bucket/folder/)")
        with atomic_dir(dest) as tmp:
            for key, _ in keys:
                relative = PurePosixPath(key[len(prefix):])
                if relative.is_absolute() or ".." in relative.parts:
                    raise InputError(f"{uri}: the object key '{key}' leaves the folder",
                                     fix="rename the object without '..' in its key")
                target = tmp.joinpath(*relative.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, key, str(target))
    except (ClientError, BotoCoreError) as exc:
        raise _failure(uri, exc) from exc
    return {"uri": uri, "files": len(keys), "bytes": sum(size for _, size in keys)}


def localise(spec: str, cache_dir: str | os.PathLike) -> str:
    """``spec`` itself, or for an ``s3://`` folder the local copy made under ``cache_dir``."""
    if not is_s3_uri(spec):
        return spec
    import hashlib

    dest = Path(cache_dir) / hashlib.sha256(spec.encode()).hexdigest()[:16]
    download_prefix(spec, dest)
    return str(dest)


def localise_config(config_json: str, cache_dir: str | os.PathLike) -> str:
    """A stage config (JSON object) whose top-level ``s3://`` values (a base model, say) are replaced by
    local copies under ``cache_dir``; other values are kept. Invalid JSON is returned as is, for the
    stage's own config check to report."""
    import json

    try:
        values = json.loads(config_json or "{}")
    except json.JSONDecodeError:
        return config_json
    if not isinstance(values, dict) or not any(is_s3_uri(v) for v in values.values()):
        return config_json
    return json.dumps({k: localise(v, cache_dir) if is_s3_uri(v) else v for k, v in values.items()})


# --- Which S3 failures are worth another try ---------------------------------------------------------------------

#: S3 error codes worth another try (besides any 5xx answer): throttling and timeouts.
S3_TRANSIENT_CODES = frozenset({"SlowDown", "RequestTimeout", "Throttling", "ThrottlingException",
                                "RequestLimitExceeded", "InternalError", "ServiceUnavailable"})


def s3_failure(exc: BaseException) -> tuple[bool, str] | None:
    """``(transient, description)`` when ``exc`` is a failed S3 request of the artifact store, else None.

    Artifacts go straight to S3 when an experiment's artifact location is ``s3://`` (the client's boto3,
    after botocore's own retries): a dropped connection or timeout (botocore ``ConnectionError``
    family), a 5xx or throttling answer (``ClientError``, which boto3's ``upload_file`` re-raises as
    ``S3UploadFailedError`` with the ``ClientError`` as context) is transient; 403, NoSuchBucket... are not.
    """
    try:
        from botocore.exceptions import ClientError, HTTPClientError
        from botocore.exceptions import ConnectionError as BotoConnectionError
    except ImportError:  # pragma: no cover - boto3 is only needed for s3:// artifact locations
        return None
    seen: set[int] = set()
    upload_failed: BaseException | None = None
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            return True, f"{type(exc).__name__}: {exc}"
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            code = str(error.get("Code", ""))
            return status >= 500 or code in S3_TRANSIENT_CODES, f"S3 answered {status} {code}: {error.get('Message', exc)}"
        if upload_failed is None and type(exc).__name__ == "S3UploadFailedError":
            upload_failed = exc
        exc = exc.__cause__ or exc.__context__
    return (True, f"S3UploadFailedError: {upload_failed}") if upload_failed is not None else None
