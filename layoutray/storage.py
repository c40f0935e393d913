"""Local paths and object-storage URIs behind one set of calls, through pyarrow filesystems.

    fs, path = resolve("s3://bucket/sections")      # (S3FileSystem, "bucket/sections")
    fs, path = resolve("runs/x")                     # (LocalFileSystem, "/abs/runs/x")
    write_json(join("s3://bucket/runs/x", "metrics.json"), {...})
    local = local_copy("s3://bucket/runs/x/model")   # a cached local copy of a small directory

Everything that takes a path (dataset directories, `--output`, checkpoints, model artifacts, the
Serve model paths, sweep storage) accepts `s3://`, `gs://` (any scheme pyarrow knows) or a local
path. Credentials and endpoints come from the standard environment of each store, read by
pyarrow's clients: for S3 `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
`AWS_DEFAULT_REGION`/`AWS_REGION` and `AWS_ENDPOINT_URL` (an S3-compatible server such as MinIO);
for GCS `GOOGLE_APPLICATION_CREDENTIALS`. A store that cannot be reached raises StorageError naming
the URI; a missing object raises FileNotFoundError as a local file would.

Local paths keep their pathlib behaviour (callers get `Path` objects back where they gave one);
URIs stay strings, since `Path("s3://b/x")` would collapse the `//`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
# The environment pyarrow's S3 and GCS clients read: a filesystem made under one setting is not
# reused under another (a test server on a new port, rotated credentials).
_ENV_KEYS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
             "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE",
             "GOOGLE_APPLICATION_CREDENTIALS")
CACHE_ENV = "LAYOUTRAY_CACHE_DIR"
KNOWN_SCHEMES = ("s3", "gs", "gcs", "hdfs", "file")


class StorageError(RuntimeError):
    """Object storage could not be used (unreachable, refused, bad URI); the message names the URI."""


def is_uri(path: str | os.PathLike | None) -> bool:
    """True for `scheme://...` (s3://, gs://, file://...); False for local paths and None."""
    return path is not None and bool(_URI.match(str(path)))


def scheme(path: str | os.PathLike) -> str:
    m = _URI.match(str(path))
    return m.group(1).lower() if m else ""


def absolute(path: str | os.PathLike) -> str:
    """A URI as it is; a local path made absolute (jobs and workers run in other directories)."""
    return str(path) if is_uri(path) else str(Path(os.path.expanduser(str(path))).resolve())


def join(base: str | os.PathLike, *parts: str) -> str:
    """`base/part/...` for URIs and local paths alike (a str)."""
    if is_uri(base):
        return "/".join([str(base).rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(base, *parts))


def basename(path: str | os.PathLike) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1] if is_uri(path) else Path(path).name


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _env_key() -> tuple:
    return tuple(os.environ.get(k) for k in _ENV_KEYS)


@functools.lru_cache(maxsize=32)
def _filesystem(root: str, env: tuple) -> pafs.FileSystem:  # env: part of the cache key only
    return pafs.FileSystem.from_uri(root)[0]


def resolve(path: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path within it). One filesystem per scheme and bucket is reused."""
    if not is_uri(path):
        return pafs.LocalFileSystem(), absolute(path)
    text = str(path)
    s = scheme(text)
    if s == "file":
        return pafs.LocalFileSystem(), text[len("file://"):]
    bucket = text[len(s) + 3:].split("/", 1)[0]
    if not bucket:
        raise StorageError(f"{text}: no bucket in the URI (expected {s}://BUCKET/PATH)")
    try:
        fs = _filesystem(f"{s}://{bucket}", _env_key())
    except (pa.ArrowException, OSError, ValueError) as e:
        raise StorageError(f"{text}: cannot open this storage ({_first_line(e)}); "
                           f"supported schemes: {', '.join(KNOWN_SCHEMES)} or a local path") from None
    return fs, text[len(s) + 3:].rstrip("/")


def _fail(path: str | os.PathLike, action: str, e: BaseException) -> BaseException:
    """The error to raise for `e`: FileNotFoundError stays one (callers handle absence); anything
    else from object storage becomes a StorageError naming the URI."""
    if not is_uri(path):
        return e
    if isinstance(e, FileNotFoundError):
        return FileNotFoundError(f"{path}: no such object")
    hint = " (is the server up? check AWS_ENDPOINT_URL and the credentials)" \
        if "NETWORK_CONNECTION" in str(e) or "connect" in str(e).lower() else ""
    return StorageError(f"{path}: cannot {action}: {_first_line(e)}{hint}")


def _call(path, action: str, fn, *args):
    try:
        return fn(*args)
    except StorageError:
        raise
    except (OSError, pa.ArrowException) as e:
        raise _fail(path, action, e) from None


def info(path: str | os.PathLike) -> pafs.FileInfo:
    fs, p = resolve(path)
    return _call(path, "reach it", fs.get_file_info, p)


def exists(path: str | os.PathLike) -> bool:
    return info(path).type != pafs.FileType.NotFound


def is_file(path: str | os.PathLike) -> bool:
    return info(path).type == pafs.FileType.File


def is_dir(path: str | os.PathLike) -> bool:
    """A local directory, or a URI prefix with objects under it (object stores have no empty
    directories)."""
    return info(path).type == pafs.FileType.Directory


def list_dir(path: str | os.PathLike) -> list[str]:
    """Names of the entries directly under `path`, sorted ([] when it does not exist)."""
    fs, p = resolve(path)
    sel = pafs.FileSelector(p, allow_not_found=True, recursive=False)
    return sorted(i.base_name for i in _call(path, "list it", fs.get_file_info, sel))


def read_bytes(path: str | os.PathLike) -> bytes:
    fs, p = resolve(path)

    def read():
        with fs.open_input_stream(p) as f:
            return f.read()
    return _call(path, "read it", read)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Whole-object write; parents are created. Local files are replaced atomically."""
    if not is_uri(path):
        target = Path(absolute(path))
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix="." + target.name)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
        return
    fs, p = resolve(path)

    def write():
        with fs.open_output_stream(p) as f:  # an object appears whole when the stream closes
            f.write(data)
    _call(path, "write it", write)


def read_text(path: str | os.PathLike) -> str:
    return read_bytes(path).decode("utf-8")


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(read_text(path))


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent, default=str) + "\n")


def open_input(path: str | os.PathLike):
    """A seekable file for readers that take one (pyarrow.parquet.ParquetFile)."""
    if not is_uri(path):
        return str(path)
    fs, p = resolve(path)
    return _call(path, "open it", fs.open_input_file, p)


def parquet_file(path: str | os.PathLike):
    import pyarrow.parquet as pq

    return pq.ParquetFile(open_input(path))


def remove_dir(path: str | os.PathLike) -> None:
    """Delete a directory (or prefix) and everything under it; absent is fine."""
    fs, p = resolve(path)
    if exists(path):
        _call(path, "delete it", fs.delete_dir, p)


def copy_dir(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy a directory tree between any two places (local -> s3 is an upload, s3 -> local a
    download). Files under `dst` that `src` lacks are left alone."""
    sfs, sp = resolve(src)
    dfs, dp = resolve(dst)
    if not is_uri(dst):
        Path(dp).mkdir(parents=True, exist_ok=True)
    where = dst if is_uri(dst) else src
    _call(where, f"copy {src} to {dst}", pafs.copy_files, sp, dp, sfs, dfs)


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    write_bytes(dst, read_bytes(src))


def cache_root() -> Path:
    """Local copies of remote artifacts and the staging directories of runs that write to object
    storage: $LAYOUTRAY_CACHE_DIR, else ~/.cache/layoutray."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "layoutray")


def cache_dir(uri: str, kind: str) -> Path:
    """A stable local directory for `uri` (the same on every call), named after its last part."""
    digest = hashlib.sha256(str(uri).encode()).hexdigest()[:16]
    return cache_root() / kind / f"{basename(uri) or 'root'}-{digest}"


def _listing(path: str) -> list[tuple[str, int, int]]:
    fs, p = resolve(path)
    sel = pafs.FileSelector(p, allow_not_found=True, recursive=True)
    infos = _call(path, "list it", fs.get_file_info, sel)
    return sorted((i.path[len(p):].lstrip("/"), i.size or 0, i.mtime_ns or 0)
                  for i in infos if i.type == pafs.FileType.File)


def local_copy(path: str | os.PathLike, kind: str = "objects") -> Path:
    """A local directory holding what `path` holds: the path itself when local; for a URI a
    cached download, fetched again when the remote listing (names, sizes, times) changed."""
    if not is_uri(path):
        return Path(absolute(path))
    uri = str(path).rstrip("/")
    listing = _listing(uri)
    if not listing:
        raise FileNotFoundError(f"{uri}: nothing there")
    local = cache_dir(uri, kind)
    stamp = local / ".layoutray-listing.json"
    want = json.dumps(listing)
    if stamp.is_file() and stamp.read_text() == want:
        return local
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=local.name + ".", dir=local.parent))
    try:
        copy_dir(uri, tmp)
        (tmp / stamp.name).write_text(want)
        if stamp.is_file() and stamp.read_text() == want:  # another process fetched the same meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
            return local
        old = local.with_name(local.name + f".old-{os.getpid()}")
        if local.exists():
            local.rename(old)
        tmp.rename(local)  # another process may have won the race: its copy is as good
        shutil.rmtree(old, ignore_errors=True)
    except (OSError, StorageError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, StorageError) or not local.exists():
            raise e if isinstance(e, StorageError) else _fail(uri, "download it", e) from None
    return local
