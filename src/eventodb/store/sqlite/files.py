"""The data directory of the SQLite backend: its lock, the file of each namespace, files created
with the store's permissions and removed with their side files."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
from pathlib import Path, PurePath

from eventodb.core.errors import BackendError

REGISTRY_FILE = "metadata.db"
LOCK_FILE = "eventodb.lock"
"""Held by the store that has a data directory open (see :class:`DataDirLock`)."""

_PLAIN_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def db_file_name(namespace: str, taken: set[str], registry_file: str = REGISTRY_FILE) -> str:
    """The file name of a namespace database inside the data directory.

    Ordinary ids (``[A-Za-z0-9_.-]``, not starting with ``.``) keep upstream's ``<id>.db``.
    Any other id, or one whose ``<id>.db`` would clash case-insensitively with an existing file
    or the registry, gets ``ns-<sanitised>-<sha256 prefix>.db`` (``-2.db``, ``-3.db``... should
    an ordinary id already use that name): never a path, never shared.

    Args:
        taken: lower-cased file names already in use.
    """
    plain = f"{namespace}.db"
    if (
        _PLAIN_ID.fullmatch(namespace)
        and plain.lower() not in taken
        and plain.lower() != registry_file.lower()
    ):
        return plain
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", namespace)[:24]
    digest = hashlib.sha256(namespace.encode("utf-8", "surrogatepass")).hexdigest()[:20]
    hashed = f"ns-{safe}-{digest}"
    # An ordinary id may spell exactly this name: then count up until a name is free.
    name, n = f"{hashed}.db", 1
    while name.lower() in taken:
        n += 1
        name = f"{hashed}-{n}.db"
    return name


def registered_file_name(db_path: str) -> str:
    """The namespace database's file name inside the data directory, from a registry ``db_path``.

    The Go server recorded the path it opened (``<data-dir>/<id>.db``, absolute or relative to
    its working directory); we record the bare file name. Namespace files always live in the
    data directory, so only the name counts, and a data directory that was moved, restored
    elsewhere or mounted at another path still opens.
    """
    return PurePath(db_path).name


def make_data_dir(path: Path, file_mode: int) -> None:
    """Create the data directory (unless it exists) with ``x`` wherever ``file_mode`` has ``r``
    (0600 → 0700); an existing directory keeps its permissions."""
    if path.is_dir():
        return
    mode = file_mode | (file_mode & 0o444) >> 2
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    os.chmod(path, mode)  # exactly: the umask may have narrowed it


def create_file(path: Path, file_mode: int) -> None:
    """An empty database file with ``file_mode``, unless it exists: SQLite keeps the permissions
    of a file it opens and gives its ``-wal``/``-shm`` files the same."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, file_mode)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, file_mode)
    finally:
        os.close(fd)


def remove_db_files(path: Path) -> None:
    """Remove a database file and its side files, those that exist."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{path}{suffix}")


class DataDirLock:
    """An exclusive lock on a data directory, held as long as a store has it open.

    Two processes writing one directory lose acknowledged writes (one keeps writing to a file
    the other has deleted and re-created), so the second is refused, naming the first
    (docs/STORAGE.md, "One server per data directory"). ``flock`` on :data:`LOCK_FILE`, which
    holds the owner's pid; the kernel drops the lock when its process ends, even by
    ``kill -9``, so a leftover file never blocks a restart.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        """Raises: BackendError naming the holder when another store has the directory."""
        import fcntl  # POSIX only, like the rest of the server's process handling

        path = data_dir / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise BackendError(f"Failed to lock data directory {data_dir}: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise BackendError(f"Failed to lock data directory {data_dir}: {exc}") from None
            raise BackendError(
                f"data directory {data_dir} is in use by another EventoDB server (pid {holder}):"
                " only one server may use a SQLite data directory; stop that one, or give this"
                " one another --data-dir (several servers can share a Postgres database)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        return cls(fd)

    def release(self) -> None:
        os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the descriptor drops the lock
