#!/usr/bin/env python3
"""Foundation figures: ingest rate and basic query latency of a fresh `creek dev`.

Loads N rows (default 1,000,000) twice, once through HTTP `bulk_args` and once through
multi-row INSERT over pgwire, then times count(*), a GROUP BY and point lookups on them.
Timings are medians after a warm-up; nothing here asserts a timing.

    tests/bench/foundation.py [--rows N] [--creek PATH-TO-RELEASE-BINARY]
"""
import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import psycopg

from servers import free_port

ROOT = Path(__file__).resolve().parents[2]
REGIONS = [f"region-{i:02d}" for i in range(50)]
COLUMNS = "id BIGINT PRIMARY KEY, region TEXT, category INTEGER, price DOUBLE PRECISION, " \
          "ts TIMESTAMP, note TEXT"


def rows(start, count, seed=42):
    rng = random.Random(seed + start)
    base = datetime(2026, 1, 1)
    for i in range(start, start + count):
        yield [i, rng.choice(REGIONS), rng.randrange(1000), round(rng.random() * 1000, 2),
               (base + timedelta(seconds=i)).isoformat(), f"note {rng.randrange(100000)}"]


class Creek:
    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="creek-bench-")
        self.pg_port, self.http_port, self.transport_port = free_port(), free_port(), free_port()
        self.proc = subprocess.Popen(
            [binary, "dev", "--data-dir", os.path.join(self.dir, "data"),
             "--pg-port", str(self.pg_port), "--http-port", str(self.http_port),
             "--transport-port", str(self.transport_port), "--flight-port", str(free_port())],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "log"), "wb"))
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.pg_port), timeout=0.2).close()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("creek dev did not start")
                time.sleep(0.05)

    def sql(self, stmt, **body):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/_sql",
            data=json.dumps({"stmt": stmt, **body}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as response:
            return json.loads(response.read())

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


def timed(fn):
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median_time(fn, runs=5):
    fn()  # warm-up
    return statistics.median(timed(fn) for _ in range(runs))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--insert-batch", type=int, default=1_000)
    parser.add_argument("--creek", default=os.environ.get("CREEK_BIN") or str(
        Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "creek"))
    args = parser.parse_args()
    creek = Creek(args.creek)
    results = []
    try:
        creek.sql(f"CREATE TABLE bulk ({COLUMNS}) CLUSTERED INTO 4 SHARDS")
        creek.sql(f"CREATE TABLE ins ({COLUMNS}) CLUSTERED INTO 4 SHARDS")
        insert = "INSERT INTO bulk VALUES (?, ?, ?, ?, ?, ?)"

        def load_bulk():
            for start in range(0, args.rows, args.batch):
                answer = creek.sql(insert, bulk_args=list(rows(start, min(args.batch, args.rows - start))))
                assert all(r["rowcount"] == 1 for r in answer["results"]), "a bulk row failed"
        seconds = timed(load_bulk)
        results.append(("ingest, HTTP bulk_args", f"{args.batch} rows/request",
                        f"{args.rows / seconds:,.0f} rows/s ({seconds:.1f} s)"))

        with psycopg.connect(f"host=127.0.0.1 port={creek.pg_port} user=crate dbname=doc",
                             autocommit=True) as conn:
            def load_insert():
                n = args.insert_batch
                for start in range(0, args.rows, n):
                    chunk = list(rows(start, min(n, args.rows - start)))
                    values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(chunk))
                    conn.execute(f"INSERT INTO ins VALUES {values}", [v for r in chunk for v in r])
            seconds = timed(load_insert)
            results.append(("ingest, multi-row INSERT (pgwire)", f"{args.insert_batch} rows/statement",
                            f"{args.rows / seconds:,.0f} rows/s ({seconds:.1f} s)"))
            conn.execute("REFRESH TABLE bulk")
            conn.execute("REFRESH TABLE ins")
            assert conn.execute("SELECT count(*) FROM bulk").fetchone()[0] == args.rows
            assert conn.execute("SELECT count(*) FROM ins").fetchone()[0] == args.rows

            def query(sql, params=None):
                return lambda: conn.execute(sql, params).fetchall()
            results.append(("SELECT count(*)", "median of 5",
                            f"{median_time(query('SELECT count(*) FROM bulk')) * 1000:.1f} ms"))
            group_by = query("SELECT region, count(*), avg(price) FROM bulk GROUP BY region")
            results.append(("GROUP BY region: count, avg(price)", "median of 5",
                            f"{median_time(group_by) * 1000:.1f} ms"))
            top = query("SELECT category, sum(price) s FROM bulk GROUP BY category "
                        "ORDER BY s DESC LIMIT 10")
            results.append(("GROUP BY category, top 10 by sum", "median of 5",
                            f"{median_time(top) * 1000:.1f} ms"))
            rng = random.Random(7)
            ids = [rng.randrange(args.rows) for _ in range(500)]
            for i in ids[:20]:
                conn.execute("SELECT * FROM bulk WHERE id = %s", [i]).fetchall()
            latencies = sorted(timed(query("SELECT * FROM bulk WHERE id = %s", [i])) for i in ids)
            results.append(("point lookup by primary key", "500 lookups, extended protocol",
                            f"median {statistics.median(latencies) * 1000:.2f} ms, "
                            f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.2f} ms"))
    finally:
        creek.stop()
    print(f"\n{args.rows:,} rows, {os.cpu_count()} cores, binary {args.creek}\n")
    print("| measurement | how | result |")
    print("|---|---|---|")
    for name, how, value in results:
        print(f"| {name} | {how} | {value} |")


if __name__ == "__main__":
    main()
