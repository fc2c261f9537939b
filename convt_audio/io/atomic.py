"""Atomic outputs: a file is written under a temporary name beside its destination and renamed
onto it only when complete; temporary files left by runs that died are recognised and swept
(README.md, "Reliability")."""

from __future__ import annotations

import glob
import os
import re
import socket
import stat
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

from ..core.errors import AudioError

_UMASK = os.umask(0)
os.umask(_UMASK)

_PART = re.compile(r"^\.(?P<name>.+)\.(?P<host>[^.]+)-(?P<pid>\d+)\.[A-Za-z0-9_]{8}\.part$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


PART_MARK = "user.convt-audio"  # an extended attribute only our temporary outputs carry
_PART_MARK_VALUE = b"part"


def _part_stem(dest: Path) -> str:
    """The output's name as its temporary files carry it: cut (at a character boundary) so that
    ``.<name>.<host>-<pid>.<8 random>.part`` fits the file system's limit on a name."""
    try:
        limit = os.pathconf(dest.parent if str(dest.parent) else ".", "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    room = limit - len(os.fsencode(f"..{_host()}-{'9' * 10}.12345678.part"))  # any pid fits
    name = os.fsencode(dest.name)
    if len(name) <= room:
        return dest.name
    return os.fsdecode(name[: max(1, room)].decode("utf-8", "ignore").encode()) or "x"


def part_prefix(dest: Path) -> str:
    """Temporary outputs are ``.<name>.<host>-<pid>.<8 random>.part``: whose they are is in the name."""
    return f".{_part_stem(dest)}.{_host()}-{os.getpid()}."


def _marked(path: Path) -> bool:
    """True when ``path`` carries the mark that :func:`atomic_path` puts on its temporary files."""
    try:
        return os.getxattr(path, PART_MARK, follow_symlinks=False) == _PART_MARK_VALUE
    except (OSError, AttributeError):
        return False


def remove_stale_parts(
    folder: str | Path, older_than: float, name: str | None = None, keep: set | frozenset = frozenset()
) -> list[Path]:
    """Remove our temporary outputs in ``folder`` left by runs that died (SIGKILL, power loss);
    with ``name``, only those of that one output (no scan of the whole folder).

    A file is ours and stale only when its name has our pattern, it names this host, it carries
    our extended attribute (a copy made by ``cp`` does not: a file someone salvaged is never
    taken) or is empty (killed before it was marked: nothing to lose), the process it names is
    gone, and it was last written before ``older_than`` (a time stamp). A live process — a concurrent run, or a reused pid — keeps its file; other
    hosts' files (a shared folder) are left to them; so is every path in ``keep`` (resolved
    paths: the run's inputs). On a file system without extended attributes nothing is removed.
    """
    removed = []
    try:
        # a glob for one output's parts (its name escaped), else every entry of the folder
        paths = (
            list(Path(folder).glob(f".{glob.escape(_part_stem(Path(folder) / name))}.*.part"))
            if name is not None
            else [Path(entry.path) for entry in os.scandir(folder)]
        )
    except OSError:
        return removed
    host = _host()
    for path in paths:
        match = _PART.match(path.name)
        if not match or match.group("host") != host:
            continue
        if _alive(int(match.group("pid"))):
            continue  # a live process's (ours to leave)
        with suppress(OSError):
            info = path.lstat()
            # marked, or empty: a run killed between creating its file and marking it left no data
            if (
                stat.S_ISREG(info.st_mode)
                and info.st_mtime < older_than
                and (_marked(path) or info.st_size == 0)
                and path.resolve() not in keep
            ):
                path.unlink()
                removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    """True while process ``pid`` runs (a zombie, killed but not yet reaped, is not running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's, alive
    with suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _refuse_special(dest: Path) -> None:
    """A named pipe, device or socket at ``dest`` is never renamed over (``/dev/null`` would
    become a file): such outputs are written into by their callers, or refused here."""

    try:
        mode = os.stat(dest).st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        kind = (
            "named pipe" if stat.S_ISFIFO(mode) else "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "socket"
        )
        raise AudioError(f"{dest}: is a {kind}, not a file; it is not replaced")


@contextmanager
def atomic_path(dest: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success move it onto ``dest``, else delete it.

    With ``overwrite=False`` the final step refuses to replace a file that appeared meanwhile.
    """
    dest = Path(dest)
    _refuse_special(dest)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=part_prefix(dest), suffix=".part", dir=dest.parent)
    except OSError as exc:
        raise AudioError(f"{dest}: cannot write in {dest.parent} ({exc.strerror})") from None
    os.close(fd)
    tmp = Path(tmp_name)
    with suppress(OSError, AttributeError):  # no extended attributes here: stale parts are then kept
        os.setxattr(tmp, PART_MARK, _PART_MARK_VALUE)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)
        try:
            if overwrite:
                os.replace(tmp, dest)
            else:
                os.link(tmp, dest)  # fails if dest exists: never clobbers
                os.unlink(tmp)
        except FileExistsError:
            raise AudioError(f"{dest}: appeared while writing; not replaced") from None
        except OSError as exc:
            raise AudioError(f"{dest}: cannot write ({exc.strerror})") from None
    except FileNotFoundError:  # the folder went away under the writer
        if not dest.parent.is_dir():
            raise AudioError(f"{dest}: its folder {dest.parent} was removed while the output was written") from None
        raise
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp)


def free_space(dest: Path) -> tuple[Path, int] | None:
    """The folder that will hold ``dest`` (its nearest existing ancestor) and its free bytes;
    None where the file system does not say."""
    import shutil

    folder = Path(dest).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return folder, shutil.disk_usage(folder).free
    except OSError:
        return None
