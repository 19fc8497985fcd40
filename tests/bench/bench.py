#!/usr/bin/env python3
"""Creek against PostgreSQL and DuckDB on the same data, in one run.

Run through `tests/bench/run` (which installs the engines and builds a release Creek):

    tests/bench/run [--scale 10k|1m|10m] [--runs 3] [--warmup 1] [--smoke]
                    [--workloads ingest,analytics,lookups,trivial,fulltext,flight]
    tests/bench/run --cluster [--scale ...]   # creek dev against a 3+3 cluster instead

Workloads, each on every engine that has the feature:
  * ingest: the `hits` rows through COPY (Creek and PostgreSQL over the wire, DuckDB from
    the file), plus Creek's HTTP `bulk_args` and multi-row INSERT on a slice of them;
  * analytics: ClickBench's 43 queries (Q0-Q42) over the 105-column `hits` table, run
    interleaved (query by query, engine by engine), median of `--runs` after `--warmup`;
    every engine's answer is checked against PostgreSQL's, and a differing one is WRONG,
    not timed;
  * point lookups: pgbench, 8 clients, a primary-key SELECT, simple and extended protocol;
  * trivial: a statement's fixed cost, `SELECT 1` and `count(*)` of an empty table, pgbench
    with one client;
  * full text: the top 10 by relevance on a `logs` table (see fulltext_bench.py);
  * flight: `SELECT * FROM hits` exported over Arrow Flight SQL through ADBC, from the
    coordinator alone and from the data nodes in parallel, against psycopg and DuckDB's Arrow
    export, and the hits rows ingested through ADBC bulk ingest (see flight_bench.py).

Prints a markdown table and appends it, with date, commit and machine, to
tests/bench/RESULTS.md (not with --smoke). Exits 1 if any query FAILED or was WRONG.
Timings are only ever reported, never asserted.
"""
import argparse
import datetime
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import psycopg

import answers
import clickbench
import cluster_bench
import flight_bench
import fulltext_bench
import hits_data
import servers

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SCALES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000, "10m": 10_000_000}


class QueryFailed(Exception):
    pass


class PgClient:
    """One autocommit psycopg connection; a query past its time limit is cancelled."""

    def __init__(self, name, dsn):
        self.name = name
        self.conn = psycopg.connect(dsn, autocommit=True)

    def query(self, sql, timeout):
        timer = threading.Timer(timeout, self.conn.cancel_safe)
        timer.start()
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall() if cur.description else []
        except psycopg.errors.QueryCanceled:
            raise QueryFailed(f"timed out after {timeout:g} s")
        except psycopg.Error as e:
            raise QueryFailed(f"{e.sqlstate or ''} {str(e).strip()}".strip())
        finally:
            timer.cancel()

    def copy_file(self, table, path):
        with self.conn.cursor() as cur:
            with cur.copy(f"COPY {table} FROM STDIN (FORMAT csv)") as copy:
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 20):
                        copy.write(chunk)

    def close(self):
        self.conn.close()


class DuckClient:
    """DuckDB in this process (as ClickBench runs it), on a database file in the temp dir."""

    name = "DuckDB"

    def __init__(self, path):
        self.conn = duckdb.connect(str(path))

    def query(self, sql, timeout):
        timer = threading.Timer(timeout, self.conn.interrupt)
        timer.start()
        try:
            return self.conn.execute(sql).fetchall()
        except duckdb.InterruptException:
            raise QueryFailed(f"timed out after {timeout:g} s")
        except duckdb.Error as e:
            raise QueryFailed(str(e).strip())
        finally:
            timer.cancel()

    def close(self):
        self.conn.close()


class PeakRss:
    """Samples a process's resident set every 0.2 s and keeps the peak of each phase (the
    kernel's own high-water mark, VmHWM, cannot be reset between phases)."""

    def __init__(self, pid):
        self.pid, self.phase, self.peaks = pid, None, {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped.wait(0.2):
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            # Anonymous memory apart: the resident set also counts the index files tantivy
            # maps, pages the kernel may drop at any time.
            for key, name in (("VmRSS", self.phase), ("RssAnon", f"{self.phase} (anonymous)")):
                match = re.search(rf"^{key}:\s+(\d+) kB", status, re.M)
                if match and self.phase:
                    kib = int(match.group(1))
                    self.peaks[name] = max(self.peaks.get(name, 0), kib)

    def enter(self, phase):
        self.phase = phase

    def stop(self):
        self.stopped.set()
        self.thread.join()


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


# ---------------------------------------------------------------------------------------
# Workloads


def ingest(args, rows, csv, creek, clients):
    """Loads `hits` into every engine; returns result rows (name, {engine: rows/s})."""
    creek_c, pg_c, duck_c = clients["Creek"], clients["PostgreSQL"], clients["DuckDB"]
    results = []
    copy = {}
    duck_c.query(clickbench.create_table(), args.timeout)
    seconds, _ = timed(lambda: duck_c.conn.execute(
        f"COPY hits FROM '{csv}' (FORMAT csv, allow_quoted_nulls false)"))
    copy["DuckDB"] = rows / seconds
    pg_c.query(clickbench.create_table(), args.timeout)
    seconds, _ = timed(lambda: pg_c.copy_file("hits", csv))
    copy["PostgreSQL"] = rows / seconds
    pg_c.query("VACUUM ANALYZE hits", 3600)
    creek_c.query(clickbench.create_table(), args.timeout)

    def creek_copy():
        creek_c.copy_file("hits", csv)
        creek_c.query("REFRESH TABLE hits", 3600)
    seconds, _ = timed(creek_copy)
    copy["Creek"] = rows / seconds
    results.append(("ingest: COPY CSV, rows/s (Creek, PostgreSQL: FROM STDIN; DuckDB: file)",
                    copy))
    for client in clients.values():
        count = client.query("SELECT count(*) FROM hits", args.timeout)[0][0]
        if count != rows:
            raise SystemExit(f"{client.name} holds {count} hits rows after the load, not {rows}")

    if "ingest" not in args.workloads:
        return results
    # The same rows into the table declared like PostgreSQL's: key indexed, the rest columnar.
    creek_c.query(clickbench.create_table("hits_pglike", index_off=True), args.timeout)

    def creek_copy_pglike():
        creek_c.copy_file("hits_pglike", csv)
        creek_c.query("REFRESH TABLE hits_pglike", 3600)
    seconds, _ = timed(creek_copy_pglike)
    count = creek_c.query("SELECT count(*) FROM hits_pglike", args.timeout)[0][0]
    if count != rows:
        raise SystemExit(f"Creek holds {count} hits_pglike rows after the load, not {rows}")
    creek_c.query("DROP TABLE hits_pglike", args.timeout)
    results.append(("ingest: COPY CSV into hits with non-key columns INDEX OFF (as PostgreSQL "
                    "indexes it), rows/s", {"Creek": rows / seconds,
                                            "PostgreSQL": copy["PostgreSQL"]}))
    # COPY FROM a file the server reads itself: Creek a file:// URI (the coordinator reads it),
    # PostgreSQL a server-side file; both into a fresh table of the default layout.
    from_file = {}
    for client in (creek_c, pg_c):
        client.query(clickbench.create_table("hits_file"), args.timeout)
    seconds, _ = timed(lambda: creek_c.query(
        f"COPY hits_file FROM 'file://{csv}' WITH (format = 'csv', header = false)", 3600))
    from_file["Creek"] = rows / seconds
    seconds, _ = timed(lambda: pg_c.query(f"COPY hits_file FROM '{csv}' (FORMAT csv)", 3600))
    from_file["PostgreSQL"] = rows / seconds
    for client in (creek_c, pg_c):
        count = client.query("SELECT count(*) FROM hits_file", args.timeout)[0][0]
        if count != rows:
            raise SystemExit(f"{client.name} holds {count} hits_file rows after COPY FROM a "
                             f"file, not {rows}")
        client.query("DROP TABLE hits_file", args.timeout)
    results.append(("ingest: COPY FROM a CSV file the server reads (Creek: 'file://...'; "
                    "PostgreSQL: a server-side file), rows/s", from_file))
    # Creek's other write paths, on a slice of the same rows.
    slice_rows = min(rows, args.slice)
    sample = duck_c.conn.execute(f"SELECT * FROM hits LIMIT {slice_rows}").fetchall()
    for table in ("hits_bulk", "hits_insert"):
        creek_c.query(clickbench.create_table(table), args.timeout)
    pg_c.query(clickbench.create_table("hits_insert"), args.timeout)
    insert = "INSERT INTO hits_bulk VALUES (" + ", ".join(["?"] * len(clickbench.SCHEMA)) + ")"

    def bulk():
        for start in range(0, slice_rows, 10_000):
            reply = creek.http_sql(insert, bulk_args=sample[start:start + 10_000])
            if any(r.get("rowcount") != 1 for r in reply["results"]):
                raise SystemExit("a bulk_args row failed")
    seconds, _ = timed(bulk)
    results.append((f"ingest: HTTP bulk_args, 10,000 rows/request ({slice_rows:,} rows), rows/s",
                    {"Creek": slice_rows / seconds}))
    per_statement = 500  # 105 columns x 500 rows stays under the 65,535 parameters of a message
    placeholders = "(" + ", ".join(["%s"] * len(clickbench.SCHEMA)) + ")"
    multi = {}
    for client in (creek_c, pg_c):
        def insert_rows():
            with client.conn.cursor() as cur:
                for start in range(0, slice_rows, per_statement):
                    chunk = sample[start:start + per_statement]
                    cur.execute("INSERT INTO hits_insert VALUES "
                                + ", ".join([placeholders] * len(chunk)),
                                [v for row in chunk for v in row])
        seconds, _ = timed(insert_rows)
        multi[client.name] = slice_rows / seconds
    results.append((f"ingest: multi-row INSERT, {per_statement} rows/statement "
                    f"({slice_rows:,} rows), rows/s", multi))
    for table in ("hits_bulk", "hits_insert"):
        creek_c.query(f"DROP TABLE {table}", args.timeout)
    pg_c.query("DROP TABLE hits_insert", args.timeout)
    return results


def analytics(args, clients):
    """Runs Q0-Q42 on every engine; returns per query {engine: (status, seconds|message)}."""
    order = ["Creek", "PostgreSQL", "DuckDB"]
    outcome = []
    for n, q in enumerate(clickbench.QUERIES):
        times = {name: [] for name in order}
        answer, failed = {}, {}
        for run in range(args.warmup + args.runs):
            for name in order:
                if name in failed:
                    continue
                try:
                    seconds, rows = timed(lambda: clients[name].query(q.sql, args.timeout))
                except QueryFailed as e:
                    failed[name] = str(e)
                    continue
                answer.setdefault(name, answers.normalize(rows))
                if run >= args.warmup:
                    times[name].append(seconds)
        reference = "PostgreSQL" if "PostgreSQL" in answer else "DuckDB"
        row = {}
        for name in order:
            if name in failed:
                row[name] = ("FAILED", failed[name])
                continue
            why = None
            if name != reference and reference in answer:
                if q.any_groups:
                    why = check_groups(clients["DuckDB"], q, answer[name], answer[reference])
                else:
                    why = answers.same_answer(answer[reference], answer[name], q.key,
                                              offset="OFFSET" in q.sql)
            row[name] = ("WRONG", why) if why else ("ok", statistics.median(times[name]))
        outcome.append((f"Q{n}", row))
        print(f"Q{n}: " + ", ".join(f"{k} {fmt_cell(v, 'ms')}" for k, v in row.items()),
              file=sys.stderr, flush=True)
    return outcome


def check_groups(duck, q, got, expected):
    """For GROUP BY ... LIMIT n without ORDER BY: any n groups will do, so each returned
    group must exist with exactly its count."""
    if len(got) != len(expected):
        return f"{len(got)} rows, expected {len(expected)}"
    for user_id, phrase, count in got:
        real = duck.conn.execute("SELECT count(*) FROM hits WHERE UserID = ? AND SearchPhrase = ?",
                                 [user_id, phrase]).fetchone()[0]
        if real != count:
            return f"group ({user_id}, {phrase!r}) has {real} rows, answered {count}"
    return None


def point_lookups(args, rows, workdir, engines, clients=(8,)):
    """pgbench with a primary-key SELECT on every engine (named by `engine.name`), simple and
    extended protocol, with each number of clients in `clients`."""
    size = max(1_000, min(rows // 10, 1_000_000))
    csv = workdir / "lookup.csv"
    duckdb.execute(f"COPY (SELECT i AS id, 'name-' || i AS name, (i * 7919) % 1000 AS score, "
                   f"TIMESTAMP '2026-01-01' + to_seconds(i) AS ts FROM range({size}) r(i)) "
                   f"TO '{csv}' (FORMAT csv, HEADER false)")
    script = workdir / "lookup.sql"
    script.write_text(f"\\set id random(0, {size - 1})\n"
                      "SELECT id, name, score, ts FROM lookup WHERE id = :id;\n")
    lookups = {}
    for engine in engines:
        client = PgClient(engine.name, engine.dsn())
        client.query("CREATE TABLE lookup (id BIGINT PRIMARY KEY, name TEXT, score INTEGER, "
                     "ts TIMESTAMP)", args.timeout)
        client.copy_file("lookup", csv)
        client.query("REFRESH TABLE lookup" if engine.name.startswith("Creek")
                     else "ANALYZE lookup", args.timeout)
        lookups[engine.name] = [client.query(f"SELECT id, name, score, ts FROM lookup "
                                             f"WHERE id = {i}", args.timeout)
                                for i in (0, size // 2, size - 1, size)]
        client.close()
    if any(answer != lookups[engines[0].name] for answer in lookups.values()):
        raise SystemExit(f"point lookups differ: {lookups}")
    results = []
    for mode, n in [(mode, n) for n in clients for mode in ("simple", "extended")]:
        row = {engine.name: pgbench(args, engine, script, mode, n, workdir / "pgbench-lookup")
               for engine in engines}
        results.append((f"point lookup, pgbench -M {mode}, {n} client{'s' * (n > 1)}, "
                        f"{size:,} rows", row))
    return results


def trivial_statements(args, workdir, engines):
    """The fixed cost of a statement: `SELECT 1` and `count(*)` of an empty table, one
    pgbench client, simple and extended protocol; the mean latency includes the same client
    and loopback round trip for every engine, so the difference is server time."""
    for engine in engines:
        client = PgClient(engine.name, engine.dsn())
        client.query("CREATE TABLE no_rows (id INTEGER PRIMARY KEY)", args.timeout)
        client.close()
    results = []
    for label, stem, sql in [("SELECT 1", "select-1", "SELECT 1;"),
                             ("count(*) of an empty table", "count-empty",
                              "SELECT count(*) FROM no_rows;")]:
        script = workdir / f"{stem}.sql"
        script.write_text(sql + "\n")
        for mode in ("simple", "extended"):
            row = {engine.name: pgbench(args, engine, script, mode, 1, workdir / "pgbench-trivial")
                   for engine in engines}
            results.append((f"{label}, pgbench -M {mode}, 1 client", row))
    return results


def pgbench(args, engine, script, mode, clients, logs_under):
    """Runs `script` on `engine` with pgbench for `--pgbench-seconds`; the cell is
    ("ok", tps, p99 ms, mean ms) or ("FAILED", why)."""
    logs = logs_under / f"{engine.name.replace(' ', '-')}-{script.stem}-{mode}-{clients}"
    logs.mkdir(parents=True)
    done = subprocess.run(
        ["pgbench", "-n", "-h", "127.0.0.1", "-p", str(engine.port), "-U", engine.user,
         "-c", str(clients), "-j", str(min(clients, os.cpu_count() or 2)),
         "-T", str(args.pgbench_seconds),
         "-M", mode, "-f", str(script), "-l", f"--log-prefix={logs}/tx", engine.dbname],
        capture_output=True, text=True)
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", done.stdout)
    if done.returncode != 0 or not tps or (failed and int(failed.group(1))):
        return ("FAILED", (done.stderr or done.stdout).strip()[-300:])
    latencies = sorted(int(line.split()[2]) for log in logs.iterdir()
                       for line in log.read_text().splitlines())
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)] / 1000
    return ("ok", float(tps.group(1)), p99, statistics.fmean(latencies) / 1000)


# ---------------------------------------------------------------------------------------
# Report


def fmt_cell(cell, unit):
    status, value = cell[0], cell[1]
    if status != "ok":
        return status
    if unit == "ms":
        return f"{value * 1000:,.1f}"
    if unit == "tps":
        return f"{value:,.0f} tps, p99 {cell[2]:.2f} ms"
    if unit == "latency":
        return f"{cell[3]:.3f} ms, p99 {cell[2]:.2f} ms"
    if unit == "export":
        return f"{cell[2]:,.0f} MB/s, {value:,.0f} rows/s"
    return f"{value:,.0f}"


def ratio(creek, peer, higher_is_better=False):
    if not creek or not peer or creek[0] != "ok" or peer[0] != "ok":
        return ""
    r = peer[1] / creek[1] if higher_is_better else creek[1] / peer[1]
    return f"{r:.2f}"


def machine():
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return os.cpu_count(), memory


def commit():
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return sha + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def report(args, rows, ingest_rows, query_rows, lookup_rows, trivial_rows, fulltext_rows,
           flight_rows, versions, rss):
    cores, memory = machine()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## {now} · commit {commit()} · scale {args.scale} ({rows:,} rows) · "
        f"{cores} cores, {memory / (1 << 30):.1f} GiB",
        "",
        f"Creek {versions['Creek']} (`{args.creek}`); PostgreSQL {versions['PostgreSQL']}; "
        f"DuckDB {versions['DuckDB']} in-process. Queries: median of {args.runs} runs after "
        f"{args.warmup} warm-up, interleaved; ratio = Creek time / peer time (above 1: Creek "
        "is slower)." + (
            " Flight export: MB = Arrow bytes of the result (`Table.nbytes`), PostgreSQL's "
            "rows (psycopg, text format) counted in Creek's bytes; the ratio is of times."
            if flight_rows else ""),
        "",
        "| workload | Creek | PostgreSQL | DuckDB | Creek/PostgreSQL | Creek/DuckDB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    problems = []
    for name, row in ingest_rows:
        cells = {k: ("ok", v) for k, v in row.items()}
        lines.append(f"| {name} | " + " | ".join(
            fmt_cell(cells[e], "rate") if e in cells else "–"
            for e in ("Creek", "PostgreSQL", "DuckDB"))
            + f" | {ratio(cells.get('Creek'), cells.get('PostgreSQL'), True)}"
            + f" | {ratio(cells.get('Creek'), cells.get('DuckDB'), True)} |")
    ratios = {"PostgreSQL": [], "DuckDB": []}
    for name, row in query_rows:
        for engine, cell in row.items():
            if cell[0] != "ok":
                problems.append(f"- {name} {engine} {cell[0]}: {cell[1]}")
        for peer in ratios:
            creek, other = row["Creek"], row[peer]
            # From the times, not from the two-decimal text: a ratio under 0.005 prints 0.00.
            if creek[0] == "ok" and other[0] == "ok" and creek[1] > 0 and other[1] > 0:
                ratios[peer].append(creek[1] / other[1])
        lines.append(f"| {name} (ms) | " + " | ".join(
            fmt_cell(row[e], "ms") for e in ("Creek", "PostgreSQL", "DuckDB"))
            + f" | {ratio(row['Creek'], row['PostgreSQL'])} | {ratio(row['Creek'], row['DuckDB'])} |")
    geo = {p: statistics.geometric_mean(v) if v else None for p, v in ratios.items()}
    if query_rows:
        lines.append("| ClickBench geometric mean of ratios (queries all engines answered) "
                     "| | | | " + " | ".join(f"{geo[p]:.2f}" if geo[p] else ""
                                            for p in ("PostgreSQL", "DuckDB")) + " |")
    # pgbench rows; the ratio is of tps, which for one client is that of mean latency.
    pgbench_rows = [(name, row, "tps") for name, row in lookup_rows] + \
        [(f"{name}, mean latency", row, "latency") for name, row in trivial_rows]
    for name, row, unit in pgbench_rows:
        for engine, cell in row.items():
            if cell[0] != "ok":
                problems.append(f"- {name} {engine} FAILED: {cell[1]}")
        lines.append(f"| {name} | " + " | ".join(
            fmt_cell(row[e], unit) if e in row else "–" for e in ("Creek", "PostgreSQL", "DuckDB"))
            + f" | {ratio(row.get('Creek'), row.get('PostgreSQL'), True)} | |")
    for name, row in fulltext_rows:
        cells = {e: row[e] for e in ("Creek", "PostgreSQL") if e in row}
        if all(isinstance(v, float) for v in row.values()):
            cells = {k: ("ok", v) for k, v in row.items()}
            lines.append(f"| {name} | " + " | ".join(
                fmt_cell(cells[e], "rate") if e in cells else "–"
                for e in ("Creek", "PostgreSQL", "DuckDB"))
                + f" | {ratio(cells.get('Creek'), cells.get('PostgreSQL'), True)} | |")
            continue
        for engine, cell in cells.items():
            if cell[0] != "ok":
                problems.append(f"- {name} {engine} {cell[0]}: {cell[1]}")
        lines.append(f"| {name} (ms) | " + " | ".join(
            fmt_cell(cells[e], "ms") if e in cells else "–"
            for e in ("Creek", "PostgreSQL", "DuckDB"))
            + f" | {ratio(cells.get('Creek'), cells.get('PostgreSQL'))} | |")
    # Flight SQL rows: rates, so the ratio is peer rate / Creek rate (of times, as above).
    for name, row, unit in flight_rows:
        for engine, cell in row.items():
            if cell[0] != "ok":
                problems.append(f"- {name} {engine} {cell[0]}: {cell[1]}")
        lines.append(f"| {name} | " + " | ".join(
            fmt_cell(row[e], unit) if e in row else "–" for e in ("Creek", "PostgreSQL", "DuckDB"))
            + f" | {ratio(row.get('Creek'), row.get('PostgreSQL'), True)}"
            + f" | {ratio(row.get('Creek'), row.get('DuckDB'), True)} |")
    if rss:
        lines.append("| Creek peak RSS (MiB): " + ", ".join(rss) + " | "
                     + " / ".join(f"{kib / 1024:,.0f}" for kib in rss.values()) + " | | | | |")
    lines.append(f"| workloads run: {', '.join(sorted(args.workloads))} | | | | | |")
    if problems:
        lines += ["", "Failed or wrong:", ""] + problems
    return "\n".join(lines) + "\n", problems


# ---------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="1m", choices=SCALES)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300, help="seconds per query")
    parser.add_argument("--slice", type=int, default=50_000,
                        help="rows for the bulk_args and multi-row INSERT ingest paths")
    parser.add_argument("--pgbench-seconds", type=int, default=15)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--creek", default=os.environ.get("CREEK_BIN"), required=False)
    parser.add_argument("--smoke", action="store_true",
                        help="CI: check every query runs and answers agree; record nothing")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument("--cluster", action="store_true",
                        help="instead of the engine comparison: creek dev against a cluster of "
                             "3 coordinators and 3 data nodes (see cluster_bench.py)")
    parser.add_argument("--workloads", default="ingest,analytics,lookups,trivial,fulltext,flight",
                        type=lambda text: set(text.split(",")),
                        help="comma-separated subset of ingest,analytics,lookups,trivial,fulltext,"
                             "flight (the COPY load of hits always runs)")
    args = parser.parse_args()
    # SIGTERM (a killed CI job) unwinds like Ctrl-C, so the servers below are stopped.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    if not args.creek:
        parser.error("--creek (or CREEK_BIN) must name the creek binary")
    rows = SCALES[args.scale]
    workdir = Path(tempfile.mkdtemp(prefix="creek-bench-"))
    cores, memory = machine()
    engines, clients, rss_sampler = [], {}, None
    if args.cluster:
        try:
            csv = workdir / "hits.csv"
            hits_data.generate_csv(csv, rows, args.seed)
            text, problems = cluster_bench.run(args, rows, workdir, csv, sys.modules[__name__])
        finally:
            if not args.keep:
                servers.remove(workdir)
        print(text)
        if not args.smoke:
            with open(RESULTS, "a") as out:
                out.write("\n" + text)
        sys.exit(1 if problems else 0)
    try:
        csv = workdir / "hits.csv"
        seconds, _ = timed(lambda: hits_data.generate_csv(csv, rows, args.seed))
        print(f"generated {rows:,} rows in {seconds:.1f} s", file=sys.stderr)
        creek = servers.Creek(args.creek, workdir)
        engines.append(creek)
        postgres = servers.Postgres(workdir, memory)
        engines.append(postgres)
        clients = {
            "Creek": PgClient("Creek", creek.dsn()),
            "PostgreSQL": PgClient("PostgreSQL", postgres.dsn()),
            "DuckDB": DuckClient(workdir / "hits.duckdb"),
        }
        versions = {
            "Creek": creek.version(),
            "PostgreSQL": clients["PostgreSQL"].query("SHOW server_version", 30)[0][0],
            "DuckDB": duckdb.__version__,
        }
        rss_sampler = PeakRss(creek.proc.pid)
        rss_sampler.enter("load")
        ingest_rows = ingest(args, rows, csv, creek, clients)
        print(f"loaded: {ingest_rows}", file=sys.stderr, flush=True)
        rss_sampler.enter("queries")
        query_rows = analytics(args, clients) if "analytics" in args.workloads else []
        flight_rows = []
        if "flight" in args.workloads:
            # Its own phase: whether the coordinator holds a whole result when it streams it
            # alone shows in its peak memory.
            rss_sampler.enter("flight")
            flight_rows = flight_bench.run(args, rows, creek, clients,
                                           ingest_rows[0][1]["PostgreSQL"], timed, QueryFailed)
        rss_sampler.enter(None)
        rss_sampler.stop()
        print(f"Creek peak RSS (KiB): {rss_sampler.peaks}", file=sys.stderr, flush=True)
        lookup_rows = (point_lookups(args, rows, workdir, [creek, postgres])
                       if "lookups" in args.workloads else [])
        trivial_rows = (trivial_statements(args, workdir, [creek, postgres])
                        if "trivial" in args.workloads else [])
        fulltext_rows = []
        if "fulltext" in args.workloads:
            logs = workdir / "logs.csv"
            fulltext_bench.generate_csv(logs, rows, args.seed)
            ft_ingest, ft_queries = fulltext_bench.run(
                args, rows, logs, clients["Creek"], clients["PostgreSQL"], timed, QueryFailed)
            fulltext_rows = [ft_ingest] + ft_queries
            for name, row in ft_queries:
                print(f"{name}: " + ", ".join(f"{k} {fmt_cell(v, 'ms')}" for k, v in row.items()),
                      file=sys.stderr, flush=True)
    finally:
        for client in clients.values():
            client.close()
        for engine in engines:
            engine.stop()
        if not args.keep:
            servers.remove(workdir)
    rss = rss_sampler.peaks if rss_sampler else {}
    text, problems = report(args, rows, ingest_rows, query_rows, lookup_rows, trivial_rows,
                            fulltext_rows, flight_rows, versions, rss)
    print(text)
    if not args.smoke:
        with open(RESULTS, "a") as out:
            out.write("\n" + text)
        print(f"appended to {RESULTS.relative_to(ROOT)} ({platform.node()})", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
