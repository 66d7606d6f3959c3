"""Start, watch and stop the platform's processes; shared by `make run` and the end-to-end tests."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import httpx


class ProcessFailedToStart(RuntimeError):
    """A process exited, or never answered its readiness URL, within its start-up window."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ManagedProcess:
    """A child process with a name, a log file and an HTTP readiness check."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    ready_url: str | None = None
    private_tmp: bool = False
    """Give the process a TMPDIR of its own, removed when it stops: for servers such as vLLM
    that leave files and sockets in the temporary directory when they stop."""
    _tmp: Path | None = field(default=None, init=False, repr=False)
    _popen: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log: IO[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def pid(self) -> int:
        assert self._popen is not None, f"{self.name} is not started"
        return self._popen.pid

    def start(self, timeout: float = 60.0) -> "ManagedProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        env = {**os.environ, **self.env}
        if self.private_tmp:
            self._tmp = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
            env["TMPDIR"] = str(self._tmp)
        # A new session so that Ctrl-C in the terminal reaches only the launcher, which then
        # stops its children in order instead of everything dying at once.
        self._popen = subprocess.Popen(  # noqa: S603 - argv is built by the project, not a user
            list(self.argv),
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if self.ready_url:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        assert self.ready_url is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running():
                raise ProcessFailedToStart(
                    f"{self.name} exited; see {self.log_path}\n{self.tail()}"
                )
            try:
                if httpx.get(self.ready_url, timeout=2.0).status_code < 500 and self._answers():
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise ProcessFailedToStart(f"{self.name} not ready after {timeout:.0f}s\n{self.tail()}")

    def _answers(self) -> bool:
        """The ready URL's port is this process's (or its children's), not another server's:
        a port picked free (`free_port`) can be taken by someone else before this process binds
        it, and then the answer would be theirs (a test once read moto's S3 where its callback
        receiver should have been). This process then fails to bind and exits, loudly."""
        assert self.ready_url is not None
        assert self._popen is not None
        port = urlsplit(self.ready_url).port
        return port is None or bool(_listeners(port) & _sockets_of_group(self._popen.pid))

    def is_running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def send_signal(self, signum: int) -> None:
        if self.is_running():
            assert self._popen is not None
            self._popen.send_signal(signum)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if it is still running after `timeout` seconds."""
        assert self._popen is not None
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; returns the exit code.

        What the process started in its session and left running (vLLM's engine processes when
        its API server is killed) is killed with it."""
        if self._popen is None:
            return None
        if self.is_running():
            self._popen.send_signal(signal.SIGTERM)
            if self.wait(grace) is None:
                self._popen.kill()
                self._popen.wait()
        _kill_session(self._popen.pid)
        if self._log is not None:
            self._log.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
        return self._popen.returncode

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _listeners(port: int) -> set[str]:
    """The socket inodes listening on TCP `port` (Linux's /proc/net/tcp and tcp6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(inode)
    return inodes


def _sockets_of_group(leader: int) -> set[str]:
    """The socket inodes held by the processes of `leader`'s process group."""
    return {inode for pid in _group(leader) for inode in _socket_inodes(pid)}


def _group(leader: int) -> Iterator[str]:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # The fields after the command name, which may hold spaces: state, ppid, pgrp.
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == leader:
                yield stat.parent.name


def _socket_inodes(pid: str) -> Iterator[str]:
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                yield target[len("socket:[") : -1]


def _kill_session(leader: int) -> None:
    """SIGKILL whatever is left of the process group a child started (start_new_session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader, signal.SIGKILL)


def python_module(module: str, *args: str) -> list[str]:
    """argv that runs `python -m module` with this interpreter (the project's .venv)."""
    return [sys.executable, "-m", module, *args]
