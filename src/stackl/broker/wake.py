"""Cross-process wake-ups for the SQLite broker: what ``LISTEN/NOTIFY`` does on PostgreSQL.

SQLite has no notifications, so without this a claimer in one process sees an item enqueued by another only at
its next poll. Every broker on a SQLite *file* binds a Unix datagram socket in a directory beside the database
(``<database>-wake/<pid>-<random>``, mode 0700); after a transaction that enqueued (or re-queued) items commits,
the broker sends each queue's name, one datagram per queue, to every other socket in that directory, and a
receiving broker wakes its waiters on those queues, exactly as a NOTIFY does.

Why datagrams in a directory: no server, no port to agree on, nothing to clean up but the broker's own socket
(a socket left by a dead process refuses the next datagram and is removed by its sender). Sending is a
non-blocking ``sendto`` per listener, far below the cost of the transaction it follows; the directory listing
is cached until the directory changes. A wake-up is a hint, never a promise: a lost datagram (a full receive
buffer, a process that could not bind) costs at most the waiter's safety-net poll, as on PostgreSQL.
"""

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

SUFFIX = "-wake"
MAX_PATH = 107  # sun_path holds 108 bytes with its NUL
MAX_DATAGRAM = 512  # a queue name is far shorter


def directory_for(database: Path) -> Path:
    """The wake-up directory of a SQLite database file."""
    return database.with_name(database.name + SUFFIX)


class WakeChannel:
    """One broker's socket in the wake-up directory of its database; ``open`` on the event loop, then ``send``.

    ``on_wake`` receives each queue name another process announced, on the event loop.
    """

    def __init__(self, database: Path, on_wake: Callable[[str], None]) -> None:
        self.directory = directory_for(database)
        self._on_wake = on_wake
        self._socket: socket.socket | None = None
        self._sender: socket.socket | None = None
        self._path: Path | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._peers: list[str] = []
        self._peers_mtime = -1

    @property
    def listening(self) -> bool:
        """Whether other processes can wake this broker (its socket is bound)."""
        return self._socket is not None

    def open(self) -> bool:
        """Bind this broker's socket and read it on the running loop; False (polling only) when impossible."""
        try:
            self.directory.mkdir(mode=0o700, exist_ok=True)
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sender.setblocking(False)
            path = self.directory / f"{os.getpid()}-{secrets.token_hex(4)}"
            if len(os.fsencode(path)) > MAX_PATH:
                log.debug("broker_wake_path_too_long", path=str(path))
                return False
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.bind(str(path))
        except OSError as exc:
            log.debug("broker_wake_unavailable", directory=str(self.directory), error=str(exc))
            return False
        self._socket, self._path = sock, path
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._read)
        return True

    def close(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
            sock.close()
        if self._path is not None:
            with contextlib.suppress(OSError):
                self._path.unlink()
            self._path = None
        if self._sender is not None:
            self._sender.close()
            self._sender = None

    def send(self, queues: set[str]) -> None:
        """Announce ``queues`` (their items are committed) to every other broker of this database."""
        if self._sender is None or not queues:
            return
        own = self._path.name if self._path is not None else ""
        for peer in self._listeners():
            if peer == own:
                continue
            target = str(self.directory / peer)
            for queue in queues:
                try:
                    self._sender.sendto(queue.encode()[:MAX_DATAGRAM], target)
                except BlockingIOError:
                    break  # its buffer is full: it has wake-ups pending already
                except (ConnectionRefusedError, FileNotFoundError):
                    with contextlib.suppress(OSError):  # its process died without removing its socket
                        os.unlink(target)
                    self._peers_mtime = -1
                    break
                except OSError:
                    break  # a wake-up is a hint: the waiter's poll still finds the item

    def _listeners(self) -> list[str]:
        try:
            mtime = self.directory.stat().st_mtime_ns
            if mtime != self._peers_mtime:
                self._peers = [entry.name for entry in os.scandir(self.directory)]
                self._peers_mtime = mtime
        except OSError:
            return []
        return self._peers

    def _read(self) -> None:
        sock = self._socket
        if sock is None:
            return
        woken: set[str] = set()
        while True:
            try:
                data = sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            woken.add(data.decode(errors="replace"))
        for queue in woken:
            self._on_wake(queue)
