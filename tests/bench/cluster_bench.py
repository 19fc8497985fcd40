"""`creek dev` against a Creek cluster (3 voting coordinators, 3 data nodes, separate
processes on this machine), on the same `hits` rows: what distribution costs or gains.

Measures, on both: the COPY load, a few GROUP BY queries over every row once both have
finished merging segments in the background (median of `--runs` after `--warmup`, answers
compared), and pgbench point lookups (8 clients and 1
client); on the cluster also leader failover (kill -9 the leader, time until another
coordinator accepts DDL; median of 3). Run through `tests/bench/run --cluster`.
"""
import datetime
import os
import statistics
import sys
import time

import answers
import clickbench
import servers

# Full scans with GROUP BY of growing cardinality: RegionID, UserID, (UserID, SearchPhrase)
# and a filtered one on AdvEngineID; Q0/Q2 are plain aggregates.
QUERIES = [0, 2, 8, 9, 15, 16, 7]
FAILOVERS = 3


def settle(pids, busy=0.05, limit=180):
    """Waits until the processes `pids` together use less than `busy` of one core over a
    second, or `limit` seconds pass; returns the seconds waited."""
    hz = os.sysconf("SC_CLK_TCK")

    def ticks():
        total = 0
        for pid in pids:
            try:
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
            except OSError:
                pass
        return total
    started = time.time()
    while time.time() - started < limit:
        before = ticks()
        time.sleep(1)
        if (ticks() - before) / hz < busy:
            break
    return time.time() - started


def run(args, rows, workdir, csv, bench):
    """Returns (markdown text, problems)."""
    dev = servers.Creek(args.creek, workdir)
    cluster = None
    clients = {}
    try:
        cluster = servers.CreekCluster(args.creek, workdir)
        cluster.name = "Creek cluster"
        engines = {"Creek": dev, "Creek cluster": cluster}
        clients = {name: bench.PgClient(name, e.dsn()) for name, e in engines.items()}
        load = {}
        for name, client in clients.items():
            client.query(clickbench.create_table(), args.timeout)

            def copy():
                client.copy_file("hits", csv)
                client.query("REFRESH TABLE hits", 3600)
            seconds, _ = bench.timed(copy)
            load[name] = rows / seconds
            count = client.query("SELECT count(*) FROM hits", args.timeout)[0][0]
            if count != rows:
                raise SystemExit(f"{name} holds {count} rows after the load, not {rows}")
        # Both loads leave tantivy merging segments in the background; timing queries while
        # either engine still merges would measure the merges.
        waited = settle([dev.proc.pid] + [p.pid for p in cluster.procs.values()])
        print(f"background merges settled after {waited:.0f} s", file=sys.stderr)
        shards = clients["Creek cluster"].query(
            "SELECT node_id, count(*) FROM sys.shards WHERE table_name = 'hits' "
            "GROUP BY node_id ORDER BY node_id", args.timeout)
        print(f"cluster shards of hits: {shards}", file=sys.stderr)
        query_rows, problems = [], []
        for n in QUERIES:
            q = clickbench.QUERIES[n]
            times = {name: [] for name in clients}
            got = {}
            for run_index in range(args.warmup + args.runs):
                for name, client in clients.items():
                    seconds, result = bench.timed(lambda: client.query(q.sql, args.timeout))
                    got.setdefault(name, answers.normalize(result))
                    if run_index >= args.warmup:
                        times[name].append(seconds)
            why = answers.same_answer(got["Creek"], got["Creek cluster"], q.key,
                                      offset="OFFSET" in q.sql)
            if why and not q.any_groups:
                problems.append(f"- Q{n}: the cluster answers differently: {why}")
            query_rows.append((f"Q{n} (ms)", {k: statistics.median(v) for k, v in times.items()}))
            print(f"Q{n}: " + ", ".join(f"{k} {statistics.median(v) * 1000:.1f} ms"
                                        for k, v in times.items()), file=sys.stderr, flush=True)
        for client in clients.values():
            client.close()
        clients = {}
        lookup_rows = bench.point_lookups(args, rows, workdir, [dev, cluster], clients=(8, 1))
        failovers = [cluster.kill_leader() for _ in range(FAILOVERS)]
    finally:
        for client in clients.values():
            client.close()
        dev.stop()
        if cluster:
            cluster.stop()
    return report(args, rows, load, query_rows, lookup_rows, failovers, bench), problems


def report(args, rows, load, query_rows, lookup_rows, failovers, bench):
    cores, memory = bench.machine()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## {now} · commit {bench.commit()} · cluster vs dev · scale {args.scale} "
        f"({rows:,} rows) · {cores} cores, {memory / (1 << 30):.1f} GiB",
        "",
        f"`creek dev` (one process) against a cluster of 3 voting coordinators and 3 data "
        f"nodes (six processes, all on this machine), binary `{args.creek}`. "
        f"Clients use coordinator c1. Queries: median of {args.runs} runs after {args.warmup} "
        "warm-up; ratio = cluster / dev (above 1: the cluster is slower).",
        "",
        "| measurement | creek dev | cluster 3+3 | cluster/dev |",
        "|---|---:|---:|---:|",
        f"| COPY load, rows/s | {load['Creek']:,.0f} | {load['Creek cluster']:,.0f} | "
        f"{load['Creek'] / load['Creek cluster']:.2f} (time) |",
    ]
    for name, row in query_rows:
        dev, cluster = row["Creek"], row["Creek cluster"]
        sql = clickbench.QUERIES[int(name[1:].split()[0])].sql
        lines.append(f"| {name}: `{sql[:70]}{'…' if len(sql) > 70 else ''}` | "
                     f"{dev * 1000:,.1f} | {cluster * 1000:,.1f} | {cluster / dev:.2f} |")
    for name, row in lookup_rows:
        dev, cluster = row.get("Creek"), row.get("Creek cluster")
        cells = [bench.fmt_cell(c, "tps") if c else "–" for c in (dev, cluster)]
        ratio = (f"{dev[1] / cluster[1]:.2f} (time)" if dev and cluster and dev[0] == "ok"
                 and cluster[0] == "ok" else "")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {ratio} |")
    lines.append(f"| leader failover: kill -9 → DDL accepted, s (median of {len(failovers)}: "
                 f"{', '.join(f'{f:.2f}' for f in failovers)}) | – | "
                 f"{statistics.median(failovers):.2f} | |")
    return "\n".join(lines) + "\n"
