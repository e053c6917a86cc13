"""Locations: a local path, ``s3://bucket/prefix`` or ``gs://bucket/prefix``, resolved to a ``pyarrow.fs`` filesystem.

Every place the platform reads or writes (the store, plans, run outputs, bulk inputs and outputs, evaluation
outputs) is a location. This module is the one place that knows which kind a location is; the rest of the code
calls ``resolve(location)`` and works with the ``Location`` it gets (a filesystem and a path inside it).

S3 settings come from the standard AWS environment, read when a location is resolved:
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (an S3-compatible store such as MinIO, Ceph or moto),
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, ``AWS_REGION`` /
``AWS_DEFAULT_REGION``. Explicit keys are put into the filesystem object, so a ``Location`` pickled to a Ray
worker on another node carries them (a node without the variables can still read the bucket). Without keys in
the environment, pyarrow's default credential chain (instance roles, ~/.aws) is used on each node.

Object stores have no rename: ``write_bytes`` writes an object whole (S3's PUT is atomic); on a local disk it
writes a temporary file and renames it, so a reader never sees half a file either way. What must appear as a
whole across several files (a store partition) is published by a commit file written last (see data/store.py).
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

REMOTE_SCHEMES = ("s3", "gs", "gcs")


class LocationError(ValueError):
    """A location that cannot be used: a bucket that does not exist, access denied, an unknown scheme."""


def is_remote(location: str | os.PathLike) -> bool:
    return urlparse(str(location)).scheme in REMOTE_SCHEMES


def s3_endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def s3_filesystem() -> pafs.S3FileSystem:
    """The S3 filesystem for this process's AWS environment (endpoint override for S3-compatible stores)."""
    kwargs: dict = {}
    endpoint = s3_endpoint()
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs["endpoint_override"] = parsed.netloc or parsed.path
        kwargs["scheme"] = parsed.scheme or "https"
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    elif endpoint:
        kwargs["region"] = "us-east-1"  # S3-compatible stores ignore it; pyarrow would otherwise ask AWS
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        kwargs.update(access_key=key, secret_key=secret, session_token=os.environ.get("AWS_SESSION_TOKEN"))
    # delayed open: a file written whole goes up in one PUT when it fits one part (a multipart upload is three
    # requests at least); an error then shows when the file is closed, which write_bytes does at once
    return pafs.S3FileSystem(allow_delayed_open=True, **kwargs)


@dataclass(frozen=True)
class Location:
    """A filesystem and a path inside it. ``str(location)`` gives the URI (or the local path) back."""

    fs: pafs.FileSystem
    path: str  # "bucket/prefix/..." for a bucket, an absolute path on a local disk
    scheme: str = ""  # "" for a local path

    @property
    def is_local(self) -> bool:
        return not self.scheme

    @property
    def uri(self) -> str:
        return self.path if self.is_local else f"{self.scheme}://{self.path}"

    def __str__(self) -> str:
        return self.uri

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    @property
    def parent(self) -> Location:
        return Location(self.fs, posixpath.dirname(self.path.rstrip("/")), self.scheme)

    def join(self, *parts: str) -> Location:
        return Location(self.fs, posixpath.join(self.path, *parts), self.scheme)

    def __truediv__(self, part: str) -> Location:
        return self.join(part)

    def local_path(self) -> Path:
        if not self.is_local:
            raise LocationError(f"location {self.uri}: a bucket location has no local path")
        return Path(self.path)

    # --- reading -------------------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self.fs.get_file_info(self.path).type == pafs.FileType.Directory

    def is_file(self) -> bool:
        return self.fs.get_file_info(self.path).type == pafs.FileType.File

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as f:
            return f.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def size(self) -> int:
        """The size of this file in bytes; FileNotFoundError if it is not there."""
        info = self.fs.get_file_info(self.path)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"{self.uri}: no such file")
        return info.size

    def locate(self, text: str) -> Location:
        """The location that ``text``, read in a file of this folder (a manifest's audio path), names: a URI or an
        absolute path as it is, a relative path inside this folder (on the same filesystem)."""
        if urlparse(text).scheme or os.path.isabs(text):
            return resolve(text, like=[self])
        return self.join(text)

    @contextmanager
    def local_copy(self) -> Iterator[str]:
        """A local path with this file's bytes for libraries that need one (tarfile, zipfile): the file itself on a
        local disk, else a temporary download, deleted after the block."""
        if self.is_local:
            yield self.path
            return
        with tempfile.TemporaryDirectory(prefix="polyglot-lion-") as tmp:
            local = os.path.join(tmp, self.name)  # the same name: archive kind and messages come from it
            with self.fs.open_input_stream(self.path) as src, open(local, "wb") as dst:
                shutil.copyfileobj(src, dst, 8 << 20)
            yield local

    def list(self, recursive: bool = False) -> list[Location]:
        """The entries under this folder (files and folders), sorted by path; [] if it does not exist."""
        selector = pafs.FileSelector(self.path, allow_not_found=True, recursive=recursive)
        infos = sorted(self.fs.get_file_info(selector), key=lambda i: i.path)
        return [Location(self.fs, i.path, self.scheme) for i in infos]

    def files(self, suffix: str = "", recursive: bool = False) -> list[Location]:
        selector = pafs.FileSelector(self.path, allow_not_found=True, recursive=recursive)
        infos = [i for i in self.fs.get_file_info(selector)
                 if i.type == pafs.FileType.File and i.path.endswith(suffix)]
        return [Location(self.fs, i.path, self.scheme) for i in sorted(infos, key=lambda i: i.path)]

    def file_infos(self, suffix: str = "", recursive: bool = False) -> list[tuple[Location, pafs.FileInfo]]:
        """As ``files``, each with its ``pyarrow.fs.FileInfo`` (size, ``mtime_ns``) from the same listing."""
        selector = pafs.FileSelector(self.path, allow_not_found=True, recursive=recursive)
        infos = [i for i in self.fs.get_file_info(selector)
                 if i.type == pafs.FileType.File and i.path.endswith(suffix)]
        return [(Location(self.fs, i.path, self.scheme), i) for i in sorted(infos, key=lambda i: i.path)]

    # --- writing -------------------------------------------------------------------------------------------
    def mkdir(self) -> None:
        """Create the folder (a no-op on a bucket, where folders are prefixes)."""
        if self.is_local:
            self.fs.create_dir(self.path, recursive=True)

    def write_bytes(self, data: bytes) -> None:
        """Write the object whole: a reader sees the old content or the new, never a part."""
        if self.is_local:
            self.parent.mkdir()
            tmp = f"{self.path}.tmp-{uuid.uuid4().hex[:8]}"
            with self.fs.open_output_stream(tmp) as f:
                f.write(data)
            os.replace(tmp, self.path)
        else:
            with self.fs.open_output_stream(self.path) as f:
                f.write(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(text.encode(encoding))

    def delete(self) -> None:
        """Delete this file, or this folder and everything under it; a no-op if absent."""
        info = self.fs.get_file_info(self.path)
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path)
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(self.path)
        elif not self.is_local:
            self.fs.delete_dir_contents(self.path, missing_dir_ok=True)


def resolve(location: str | os.PathLike | Location, like: Sequence[Location] = ()) -> Location:
    """The filesystem and path of a location: ``s3://``, ``gs://`` or a local path (made absolute).

    A location of the same kind as one of ``like`` reuses its filesystem: a Ray worker resolving a URI that the
    driver listed gets the driver's endpoint and keys (pickled with ``like``), not its own node's environment."""
    if isinstance(location, Location):
        return location
    text = str(location)
    parsed = urlparse(text)
    scheme = parsed.scheme
    if scheme in ("s3", "gs", "gcs"):
        kind = "gs" if scheme == "gcs" else scheme
        path = _bucket_path(text, parsed)
        fs = next((loc.fs for loc in like if loc.scheme == kind), None)
        if fs is None:
            fs = s3_filesystem() if kind == "s3" else pafs.GcsFileSystem()
        return Location(fs, path, kind)
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        path = parsed.path if scheme == "file" else text
        return Location(pafs.LocalFileSystem(), str(Path(path).expanduser().absolute()), "")
    raise LocationError(f"location {text!r}: scheme {scheme!r} is not supported; "
                        f"use a local path, s3://bucket/prefix or gs://bucket/prefix")


def _bucket_path(text: str, parsed) -> str:
    if not parsed.netloc:
        raise LocationError(f"location {text!r}: no bucket name; expected {parsed.scheme}://bucket/prefix")
    return f"{parsed.netloc}{parsed.path}".rstrip("/")


def check_location(location: str | os.PathLike | Location, *, write: bool, what: str = "location",
                   must_exist: bool = True) -> Location:
    """Fail early, naming the location, if its bucket does not exist or cannot be read (or written, with
    ``write``). For a local path: the nearest existing folder must be writable (``write``) or the path exist.
    With ``must_exist=False`` a read check passes for a path that is not there (its bucket must still exist and
    answer), for a caller that says in its own words what is missing. Meant to run before Ray starts, so a typo
    in a bucket name costs a second, not a cluster start."""
    loc = resolve(location)
    if loc.is_local:
        if write:
            probe = Path(loc.path)
            while not probe.exists():
                probe = probe.parent
            if not os.access(probe, os.W_OK):
                raise LocationError(f"{what} {loc.uri}: {probe} is not writable")
        elif must_exist and not Path(loc.path).exists():
            raise LocationError(f"{what} {loc.uri}: does not exist")
        return loc
    bucket = loc.path.split("/", 1)[0]
    try:
        info = loc.fs.get_file_info(bucket)
    except OSError as e:
        raise LocationError(f"{what} {loc.uri}: cannot reach bucket {bucket!r} "
                            f"(endpoint {s3_endpoint() or 'default'}): {_first_line(e)}") from None
    if info.type == pafs.FileType.NotFound:
        raise LocationError(f"{what} {loc.uri}: bucket {bucket!r} does not exist "
                            f"(endpoint {s3_endpoint() or 'default'}); create it first")
    try:
        loc.fs.get_file_info(loc.path)  # a HEAD on the key: some stores deny it while listing passes
        loc.fs.get_file_info(pafs.FileSelector(loc.path, allow_not_found=True, recursive=False))
        if write:
            probe_loc = loc.join(f".polyglot-lion-probe-{uuid.uuid4().hex[:12]}")
            probe_loc.write_bytes(b"")
            probe_loc.delete()
    except OSError as e:
        verb = "write to" if write else "read"
        raise LocationError(f"{what} {loc.uri}: cannot {verb} it: {_first_line(e)}") from None
    return loc


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def ray_storage(location: str | os.PathLike | Location) -> tuple[str, pafs.FileSystem | None]:
    """``(storage_path, storage_filesystem)`` for Ray Train's ``RunConfig``: a bucket location passes its
    filesystem (with the endpoint override); a local path passes None, Ray's default."""
    loc = resolve(location)
    return (loc.path, None) if loc.is_local else (loc.path, loc.fs)
