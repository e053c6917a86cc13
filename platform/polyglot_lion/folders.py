"""Folders between a location and this machine's disk: uploading a folder written locally (a tiny base model, a
local-mode checkpoint) and the local copy of a model folder that a process needs on disk (transformers loads
from a folder: the base model in a Ray worker, a checkpoint to log to MLflow or to evaluate).

A companion of ``storage.py`` (which resolves locations); like it, this module is one of the few places that
tells a local location from a bucket: a local folder is used where it is, a bucket's is copied into a temporary
folder. Nothing else is written to local disk.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow.fs as pafs

from .storage import Location, resolve

CACHE_DIR = "polyglot-lion-folders"  # under the system temp folder: downloads shared by a node's processes


def upload_folder(src: str | os.PathLike, location: str | os.PathLike | Location) -> Location:
    """Copy the local folder ``src`` (recursively) to ``location``; returns the location."""
    dest = resolve(location)
    dest.mkdir()
    pafs.copy_files(str(src), dest.path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=dest.fs)
    return dest


def download_folder(location: str | os.PathLike | Location, dest: str | os.PathLike) -> str:
    """Copy the folder at ``location`` (recursively) into the local folder ``dest``; returns ``dest``."""
    src = resolve(location)
    os.makedirs(dest, exist_ok=True)
    pafs.copy_files(src.path, str(dest), source_filesystem=src.fs, destination_filesystem=pafs.LocalFileSystem())
    return str(dest)


@contextmanager
def local_copy(location: str | os.PathLike | Location) -> Iterator[str]:
    """A local folder with the files of ``location`` for the block: the folder itself when it is local, else a
    temporary download, deleted after the block."""
    loc = resolve(location)
    if loc.is_local:
        yield loc.path
        return
    with tempfile.TemporaryDirectory(prefix="polyglot-lion-") as d:
        yield download_folder(loc, os.path.join(d, loc.name or "folder"))


def cached_local_copy(location: str | os.PathLike | Location) -> str:
    """A local folder with the files of ``location``, for a process that loads from it more than once (a Ray
    worker's base model, a featuriser's processor): the folder itself when it is local, else one download into
    the system temp folder per node and content (keyed by the URI and its files' sizes and times, so a folder
    written again is downloaded again), shared by the node's processes."""
    loc = resolve(location)
    if loc.is_local:
        return loc.path
    infos = loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=True))
    listing = sorted((i.path, i.size, i.mtime_ns) for i in infos if i.type == pafs.FileType.File)
    if not listing:
        raise FileNotFoundError(f"{loc}: no files there")
    key = hashlib.sha1(repr((loc.uri, listing)).encode()).hexdigest()[:20]
    root = os.path.join(tempfile.gettempdir(), CACHE_DIR)
    final = os.path.join(root, key, loc.name or "folder")
    if os.path.isdir(final):
        return final
    partial = os.path.join(root, f"{key}.partial-{uuid.uuid4().hex[:8]}")
    download_folder(loc, os.path.join(partial, loc.name or "folder"))
    try:
        os.rename(partial, os.path.join(root, key))  # whole or not at all; another process may have won
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
    return final
