"""The servers a benchmark run starts and stops: a fresh `creek dev`, a Creek cluster of
separate coordinator and data-node processes, and a throw-away PostgreSQL, each on free
loopback ports with its data under one temp dir.

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


# Below the kernel's ephemeral range (32768 and up), so that no outgoing connection is given
# a port between this check and the server binding it; each process starts at its own place.
_TEST_PORTS = range(20000, 32000)
_next_port = [(os.getpid() * 7919 + time.time_ns()) % len(_TEST_PORTS)]


def free_port():
    for _ in _TEST_PORTS:
        port = _TEST_PORTS[_next_port[0] % len(_TEST_PORTS)]
        _next_port[0] += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port in 20000..32000")


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
        # Flight SQL clients come to the coordinator here; the embedded data node picks a free
        # loopback port of its own for the endpoints GetFlightInfo hands out. Not waited for:
        # a Creek without Flight SQL fails the Flight rows, not the whole run.
        self.flight_port = free_port()
        self.log = open(self.dir / "creek.log", "wb")
        self.proc = subprocess.Popen(
            [binary, "dev", "--data-dir", str(self.dir / "data"), "--bind", "127.0.0.1",
             "--pg-port", str(self.pg_port), "--http-port", str(self.http_port),
             "--transport-port", str(self.transport_port), "--flight-port", str(self.flight_port)],
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


class CreekCluster:
    """`coordinators` voting coordinators and `data_nodes` data nodes, each its own `creek`
    process on loopback. Clients use coordinator c1; `kill_leader` measures failover."""

    name = "Creek"
    user, dbname = "crate", "doc"

    def __init__(self, binary, workdir, coordinators=3, data_nodes=3):
        self.binary = binary
        self.dir = Path(workdir) / "creek-cluster"
        self.dir.mkdir(parents=True)
        self.transport = [free_port() for _ in range(coordinators)]
        self.pg_ports = [free_port() for _ in range(coordinators)]
        self.http_ports = [free_port() for _ in range(coordinators)]
        voters = ",".join(f"c{i + 1}=127.0.0.1:{p}" for i, p in enumerate(self.transport))
        join = ",".join(f"127.0.0.1:{p}" for p in self.transport)
        self.procs = {}
        self.args = {}
        for i in range(coordinators):
            self.args[f"c{i + 1}"] = [
                "coordinator", "--node-id", f"c{i + 1}", "--data-dir", str(self.dir / f"c{i + 1}"),
                "--bind", "127.0.0.1", "--voters", voters,
                "--transport-port", str(self.transport[i]), "--pg-port", str(self.pg_ports[i]),
                "--http-port", str(self.http_ports[i]), "--flight-port", "0"]
        for i in range(data_nodes):
            self.args[f"d{i + 1}"] = [
                "datanode", "--node-id", f"d{i + 1}", "--data-dir", str(self.dir / f"d{i + 1}"),
                "--bind", "127.0.0.1", "--join", join, "--transport-port", str(free_port()),
                "--flight-port", "0"]
        for name in self.args:
            self.start(name)
        self.wait_ready(len(self.args))

    def start(self, name):
        log = open(self.dir / f"{name}.log", "ab")
        env = dict(os.environ, CREEK_CLUSTER_SECRET="bench-cluster-secret")
        self.procs[name] = subprocess.Popen([self.binary, *self.args[name]],
                                            stdout=subprocess.DEVNULL, stderr=log, env=env)

    def wait_ready(self, nodes, seconds=120):
        import psycopg
        deadline = time.time() + seconds
        while time.time() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"creek {name} exited with {proc.returncode}")
            try:
                with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=2) as conn:
                    alive = conn.execute("SELECT count(*) FROM sys.nodes WHERE alive").fetchone()[0]
                    leader = conn.execute("SELECT master_node FROM sys.cluster").fetchone()[0]
                    if alive >= nodes and leader:
                        return
            except psycopg.Error:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the Creek cluster was not ready in {seconds} s")

    @property
    def port(self):
        return self.pg_ports[0]

    def dsn(self, index=0):
        return (f"host=127.0.0.1 port={self.pg_ports[index]} user={self.user} "
                f"dbname={self.dbname}")

    def kill_leader(self):
        """Kills the leader with SIGKILL and returns the seconds until another coordinator
        accepts DDL again; the killed coordinator is restarted afterwards."""
        import psycopg
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            leader = conn.execute("SELECT master_node FROM sys.cluster").fetchone()[0]
        index = int(leader[1:]) - 1
        other = (index + 1) % len(self.pg_ports)
        self.procs[leader].kill()
        self.procs[leader].wait()
        started = time.perf_counter()
        table = f"failover_{int(time.time() * 1000)}"
        while True:
            try:
                with psycopg.connect(self.dsn(other), autocommit=True, connect_timeout=2) as conn:
                    conn.execute(f"CREATE TABLE {table} (a INT)")
                    break
            except psycopg.Error:
                if time.perf_counter() - started > 60:
                    raise RuntimeError("no DDL accepted within 60 s of killing the leader")
                time.sleep(0.02)
        seconds = time.perf_counter() - started
        self.start(leader)
        self.wait_ready(len(self.args))
        return seconds

    def stop(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


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
