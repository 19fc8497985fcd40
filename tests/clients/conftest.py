"""Starts one `creek dev` for the client tests, on free loopback ports with a temp data dir."""
import json
import os
import shutil
import signal
import sys
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The port picking the bench's servers use (below the ephemeral range, see there).
sys.path.insert(0, str(ROOT / "tests" / "bench"))
from servers import free_port  # noqa: E402


def creek_binary():
    if os.environ.get("CREEK_BIN"):
        return os.environ["CREEK_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(Path(target) / "debug" / "creek")


class Creek:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="creek-clients-")
        self.pg_port = free_port()
        self.http_port = free_port()
        self.transport_port = free_port()
        self.flight_port = free_port()
        self.extra_args = []
        self.log = open(os.path.join(self.dir, "creek.log"), "wb")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [creek_binary(), "dev", "--data-dir", os.path.join(self.dir, "data"),
             "--pg-port", str(self.pg_port), "--http-port", str(self.http_port),
             "--transport-port", str(self.transport_port),
             "--flight-port", str(self.flight_port), *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"creek dev exited: {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.pg_port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("creek dev did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def dsn(self):
        return f"host=127.0.0.1 port={self.pg_port} user=crate dbname=doc"

    @property
    def flight_uri(self):
        return f"grpc://127.0.0.1:{self.flight_port}"

    @property
    def url(self):
        return f"http://127.0.0.1:{self.http_port}"

    def alive(self):
        return self.proc.poll() is None


@pytest.fixture(scope="session")
def creek():
    server = Creek()
    server.start()
    yield server
    server.stop()
    assert server.proc.returncode in (0, -signal.SIGTERM), "creek dev did not shut down cleanly"
    shutil.rmtree(server.dir, ignore_errors=True)


def post_sql(creek, body, query=""):
    """POSTs `body` (JSON, or raw bytes) to the HTTP endpoint's `/_sql{query}`; returns the
    status and the decoded answer, errors included."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"{creek.url}/_sql{query}", data=data, method="POST")
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
