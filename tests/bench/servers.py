"""The servers a benchmark run starts and stops: a fresh `creek dev` and a throw-away
PostgreSQL, each on free loopback ports with its data under one temp dir.

Nothing here measures anything; it only gets the engines up, tells how to connect, and
tears them down even when the run fails.
"""
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

PG_BIN = Path(os.environ.get("CREEK_BENCH_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, what, seconds=60):
    deadline = time.time() + seconds
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} while starting")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.time() > deadline:
                raise RuntimeError(f"{what} did not listen on port {port} in {seconds} s")
            time.sleep(0.05)


class Creek:
    """`creek dev` with its data dir under `workdir`."""

    name = "Creek"
    user, dbname = "crate", "doc"

    def __init__(self, binary, workdir):
        self.binary = binary
        self.dir = Path(workdir) / "creek"
        self.dir.mkdir(parents=True)
        self.pg_port, self.http_port, self.transport_port = free_port(), free_port(), free_port()
        self.log = open(self.dir / "creek.log", "wb")
        self.proc = subprocess.Popen(
            [binary, "dev", "--data-dir", str(self.dir / "data"), "--bind", "127.0.0.1",
             "--pg-port", str(self.pg_port), "--http-port", str(self.http_port),
             "--transport-port", str(self.transport_port)],
            stdout=subprocess.DEVNULL, stderr=self.log)
        wait_for_port(self.pg_port, self.proc, "creek dev")

    @property
    def port(self):
        return self.pg_port

    def dsn(self):
        return f"host=127.0.0.1 port={self.pg_port} user={self.user} dbname={self.dbname}"

    def version(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/", timeout=30) as r:
            return json.loads(r.read())["version"]["creek"]

    def http_sql(self, stmt, **body):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/_sql",
            data=json.dumps({"stmt": stmt, **body}, default=str).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=3600) as response:
            return json.loads(response.read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Postgres:
    """A PostgreSQL 15 cluster made by initdb under `workdir`, tuned for a 2-core analytics
    box the way ClickBench's PostgreSQL entry is (bigger buffers and work_mem, parallel
    workers), with fsync left on so its COPY pays for durability as Creek's does."""

    name = "PostgreSQL"
    user, dbname = "bench", "bench"

    def __init__(self, workdir, memory_bytes):
        self.dir = Path(workdir) / "postgres"
        self.dir.mkdir(parents=True)
        self.port = free_port()
        # initdb and postgres refuse to run as root; the bench then runs them as `nobody`.
        self.run_as = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
        if self.run_as:
            nobody = pwd.getpwnam("nobody")
            os.chmod(workdir, 0o755)
            os.chown(self.dir, nobody.pw_uid, nobody.pw_gid)
        data = self.dir / "data"
        subprocess.run(self.run_as + [str(PG_BIN / "initdb"), "-D", str(data), "-U", self.user,
                                      "-A", "trust", "-E", "UTF8", "--locale", "C"],
                       check=True, stdout=subprocess.DEVNULL)
        shared_buffers = max(128, memory_bytes // 8 // (1 << 20))
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": self.port,
            "unix_socket_directories": f"'{self.dir}'",
            "shared_buffers": f"{shared_buffers}MB",
            "work_mem": "256MB",
            "maintenance_work_mem": "1GB",
            "max_wal_size": "8GB",
            "max_parallel_workers_per_gather": os.cpu_count() or 2,
            "max_connections": 50,
        }
        with open(data / "postgresql.auto.conf", "a") as conf:
            for key, value in settings.items():
                conf.write(f"{key} = {value}\n")
        self.proc = subprocess.Popen(
            self.run_as + [str(PG_BIN / "postgres"), "-D", str(data)],
            stdout=subprocess.DEVNULL, stderr=open(self.dir / "postgres.log", "wb"))
        wait_for_port(self.port, self.proc, "postgres")
        for _ in range(100):
            done = subprocess.run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p",
                                   str(self.port), "-U", self.user, self.dbname],
                                  capture_output=True)
            if done.returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"createdb failed: {done.stderr.decode()}")

    def dsn(self):
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={self.dbname}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def remove(workdir):
    shutil.rmtree(workdir, ignore_errors=True)
