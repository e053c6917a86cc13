"""Reading members of .zip / .tar / .tar.gz archives in place, bounded: the one archive reader of the platform.

Corpus recipes (NSC's per-speaker zips, AISHELL-1's per-speaker tar.gz, FLEURS's per-split tar.gz, SLR65's
zips) and bulk transcription read audio out of archives without extracting to disk. Every member is read with
a cap on its uncompressed size (the size a header declares can lie, so the read itself is bounded), and a
member that is not a regular file (a directory, a symlink, a hard link, a device) is reported, never followed.

A tar.gz has no index: it is read in one sequential pass, each wanted member once. A zip is read by name.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
# A single utterance (or a long NSC recording) is far below this; a member above it is refused, not read.
DEFAULT_MAX_MEMBER_BYTES = 512 * 1024 * 1024


class MemberError(Exception):
    """A member that cannot be used; ``reason`` is one of unreadable_member, member_too_large, not_a_regular_file."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class MemberInfo:
    name: str
    size: int  # uncompressed size as the archive's header declares it
    regular: bool  # a plain file (not a directory, link, device or FIFO)


def archive_kind(path: str) -> str | None:
    """'zip' or 'tar' from the file name, None for anything else."""
    low = path.lower()
    if low.endswith(".zip"):
        return "zip"
    if low.endswith((".tar", ".tar.gz", ".tgz")):
        return "tar"
    return None


def _check_tar_end(t: tarfile.TarFile) -> None:
    """tarfile ends its listing without a word at the first header it cannot parse, so a damaged archive would
    look like a short one. After the last member only zero padding may follow; reading it to the end also
    makes gzip check its CRC."""
    t.fileobj.seek(t.offset)
    while chunk := t.fileobj.read(1 << 20):
        if chunk.count(0) != len(chunk):
            raise MemberError("unreadable_member", f"damaged data after byte {t.offset} of the archive")


@contextmanager
def _open_tar(path: str) -> Iterator[tarfile.TarFile]:
    """A tar or tar.gz for one pass over its members. A .tar.gz is inflated with ISA-L (``isal``) when it is
    installed: inflating is most of what reading a member in place costs, and ISA-L does it faster than zlib."""
    if not path.lower().endswith((".gz", ".tgz")):
        with tarfile.open(path) as t:
            yield t
        return
    try:
        from isal import igzip  # optional speed-up; tarfile's own gzip reader is the fallback
    except ImportError:
        with tarfile.open(path, "r:gz") as t:
            yield t
        return
    with igzip.open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r:") as t:
        yield t


def is_archive(path: str) -> bool:
    return archive_kind(path) is not None


def _zip_regular(info: zipfile.ZipInfo) -> bool:
    """A zip made on Unix keeps the file type in its external attributes (a symlink is S_IFLNK); zips from
    elsewhere, or writers that store only permission bits, say nothing: those members are plain files."""
    kind = stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0
    return not info.is_dir() and kind in (0, stat.S_IFREG)


def list_members(path: str) -> list[MemberInfo]:
    """Every member (directories excluded) with its declared size; a zip's from its central directory,
    a tar's from one pass over the headers. Raises MemberError('unreadable_member') for a corrupt archive."""
    try:
        if archive_kind(path) == "zip":
            with zipfile.ZipFile(path) as z:
                return [MemberInfo(i.filename, i.file_size, _zip_regular(i)) for i in z.infolist() if not i.is_dir()]
        with _open_tar(path) as t:
            members = [MemberInfo(m.name, m.size, m.isfile()) for m in t if not m.isdir()]
            _check_tar_end(t)
            return members
    except MemberError:
        raise
    except Exception as e:  # OSError, EOFError, BadZipFile, TarError, zlib.error: a corrupt archive, whatever the library
        raise MemberError("unreadable_member", f"{path}: {type(e).__name__}: {e}"[:200]) from None


def _bounded_read(f, declared: int, max_bytes: int, name: str) -> bytes:
    if declared > max_bytes:
        raise MemberError("member_too_large", f"{name}: {declared} bytes > {max_bytes}")
    # Reading declared + 1 bytes still catches a member longer than its header says, and does not make the
    # reader allocate a buffer of max_bytes for every member (a visible share of a small clip's read).
    data = f.read(min(declared, max_bytes) + 1)
    if len(data) > max_bytes:
        raise MemberError("member_too_large", f"{name}: more than {max_bytes} bytes")
    return data


def iter_members(path: str, wanted: set[str] | None = None,
                 max_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> Iterator[tuple[str, bytes | MemberError]]:
    """Yield ``(name, bytes)`` for each regular member (only those in ``wanted`` when given), or
    ``(name, MemberError)`` for one that cannot be used. Members come in archive order; a name that occurs
    twice is yielded twice. A corrupt archive raises MemberError('unreadable_member') where reading stops,
    after the members read before it; the caller decides what the rest become."""
    kind = archive_kind(path)
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as z:
                for info in z.infolist():
                    if info.is_dir() or (wanted is not None and info.filename not in wanted):
                        continue
                    if not _zip_regular(info):
                        yield info.filename, MemberError("not_a_regular_file", info.filename)
                        continue
                    try:
                        with z.open(info) as f:
                            yield info.filename, _bounded_read(f, info.file_size, max_bytes, info.filename)
                    except MemberError as e:
                        yield info.filename, e
                    except Exception as e:  # CRC error, bad deflate data: this member only
                        yield info.filename, MemberError("unreadable_member",
                                                         f"{info.filename}: {type(e).__name__}: {e}"[:200])
            return
        with _open_tar(path) as t:
            for m in t:
                if m.isdir() or (wanted is not None and m.name not in wanted):
                    continue
                if not m.isfile():
                    yield m.name, MemberError("not_a_regular_file", f"{m.name} ({'link' if m.islnk() or m.issym() else 'special'})")
                    continue
                f = t.extractfile(m)
                try:
                    yield m.name, _bounded_read(f, m.size, max_bytes, m.name)
                except MemberError as e:
                    yield m.name, e
            _check_tar_end(t)
    except MemberError:
        raise
    except Exception as e:  # a corrupt archive, whatever the library raises: the caller decides about the rest
        raise MemberError("unreadable_member", f"{path}: {type(e).__name__}: {e}"[:200]) from None
