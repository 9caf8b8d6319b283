"""A real Firestore emulator for the tests: @firestore-emulator/server, run by Node.

`make test` installs the npm package into `.emulator/` (Google's own emulator needs a download
that CI cannot make). `running_emulator()` starts it on a free loopback port as a child process,
waits until it accepts connections, and kills it afterwards; `FirestoreEmulator.stop()` kills it
early, to simulate an outage in the middle of a test.

A missing emulator is a failure, never a skip: CI must not pass without testing Firestore.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
EMULATOR_DIR = REPO_ROOT / ".emulator"
EMULATOR_PACKAGE = EMULATOR_DIR / "node_modules" / "@firestore-emulator" / "server"
LAUNCHER = Path(__file__).with_name("firestore_emulator.mjs")
START_TIMEOUT_S = 30.0


class EmulatorMissing(RuntimeError):
    pass


class FirestoreEmulator:
    """One running emulator process; `host` is what FIRESTORE_EMULATOR_HOST takes."""

    def __init__(self, process: subprocess.Popen, host: str, port: int, log_path: Path):
        self.process, self.address, self.port, self.log_path = process, host, port, log_path

    @property
    def host(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Kill the emulator now (SIGKILL: an outage gives no notice) and wait until it is gone."""
        if self.running:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        if self.process.stdin is not None:
            self.process.stdin.close()


def check_installed() -> str:
    """The `node` executable, once sure the emulator package is there; else EmulatorMissing."""
    node = shutil.which("node")
    if node is None:
        raise EmulatorMissing(
            "Node.js (`node`) is not on PATH; the Firestore emulator needs it. "
            "Install Node 20+ and run `make test`."
        )
    if not (EMULATOR_PACKAGE / "package.json").is_file():
        raise EmulatorMissing(
            f"the Firestore emulator is not installed ({EMULATOR_PACKAGE} is missing). "
            "Run `make test`, which installs it with npm before running pytest."
        )
    return node


@contextmanager
def running_emulator(timeout: float = START_TIMEOUT_S) -> Iterator[FirestoreEmulator]:
    node = check_installed()
    with tempfile.TemporaryDirectory(prefix="firestore-emulator-") as tmp:
        log_path = Path(tmp) / "emulator.log"
        ready_path = Path(tmp) / "ready.json"
        # Files rather than pipes: nobody has to keep draining them while the tests run.
        with log_path.open("wb") as log, ready_path.open("wb") as ready:
            process = subprocess.Popen(
                [node, str(LAUNCHER), str(EMULATOR_DIR), "0"],
                stdout=ready,
                stderr=log,
                stdin=subprocess.PIPE,  # the emulator exits when this pipe closes
                cwd=REPO_ROOT,
                env={**os.environ, "NODE_NO_WARNINGS": "1"},
            )
        emulator = None
        try:
            host, port = _wait_until_listening(process, ready_path, log_path, timeout)
            emulator = FirestoreEmulator(process, host, port, log_path)
            yield emulator
        finally:
            if emulator is not None:
                emulator.stop()
            else:
                if process.poll() is None:
                    process.kill()
                process.wait(timeout=10)
                if process.stdin is not None:
                    process.stdin.close()


def _wait_until_listening(
    process: subprocess.Popen, ready_path: Path, log_path: Path, timeout: float
) -> tuple[str, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the Firestore emulator exited with code {process.returncode} at start-up:\n"
                + log_path.read_text(errors="replace")
            )
        line = ready_path.read_text().strip()
        if line:
            address = json.loads(line.splitlines()[0])
            host, port = address["host"], int(address["port"])
            if _accepts_connections(host, port):
                return host, port
        time.sleep(0.05)
    raise RuntimeError(
        f"the Firestore emulator did not listen within {timeout:.0f} s:\n"
        + log_path.read_text(errors="replace")
    )


def _accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A loopback port nothing listens on right now (for tests that need a dead address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
