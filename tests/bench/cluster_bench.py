"""`creek dev` against a Creek cluster (3 voting coordinators, 3 data nodes, separate
processes on this machine), on the same `hits` rows: what distribution and replication cost
or gain.

Measures, on both: the COPY load, a few GROUP BY queries over every row once both have
finished merging segments in the background (median of `--runs` after `--warmup`, answers
compared), and pgbench point lookups (8 clients and 1 client). On the cluster the table is
loaded with 0 replicas, queried, then given 1 replica (the time until GREEN and the bytes
the new copies hold give the recovery throughput), queried again (reads spread over both
copies), and a second table is loaded with 1 replica from the start (COPY rows/s with every
row written twice). Also leader failover (kill -9 the leader, time until another coordinator
accepts DDL; median of 3). Run through `tests/bench/run --cluster`.
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


def load_table(client, name, csv, rows, args, bench):
    """COPYs `csv` into `name` and refreshes it; returns rows/s."""
    def copy():
        client.copy_file(name, csv)
        client.query(f"REFRESH TABLE {name}", 3600)
    seconds, _ = bench.timed(copy)
    count = client.query(f"SELECT count(*) FROM {name}", args.timeout)[0][0]
    if count != rows:
        raise SystemExit(f"{client.name} holds {count} rows in {name} after the load, not {rows}")
    return rows / seconds


def wait_green(client, table, limit=3600):
    """Waits until `table` is GREEN; returns the seconds it took."""
    started = time.time()
    while time.time() - started < limit:
        health = client.query(
            f"SELECT health FROM sys.health WHERE table_name = '{table}'", 60)
        if health and health[0][0] == "GREEN":
            return time.time() - started
        time.sleep(0.2)
    raise SystemExit(f"{table} was not GREEN within {limit} s")


def time_queries(args, clients, bench, reference=None):
    """Times QUERIES on every client; returns ({query: {client: median s}}, answers)."""
    medians, got = {}, {}
    for n in QUERIES:
        q = clickbench.QUERIES[n]
        times = {name: [] for name in clients}
        for run_index in range(args.warmup + args.runs):
            for name, client in clients.items():
                seconds, result = bench.timed(lambda: client.query(q.sql, args.timeout))
                got.setdefault((n, name), answers.normalize(result))
                if run_index >= args.warmup:
                    times[name].append(seconds)
        medians[n] = {k: statistics.median(v) for k, v in times.items()}
        print(f"Q{n}: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in medians[n].items()),
              file=sys.stderr, flush=True)
    return medians, got


def run(args, rows, workdir, csv, bench):
    """Returns (markdown text, problems)."""
    dev = servers.Creek(args.creek, workdir)
    cluster = None
    clients = {}
    try:
        cluster = servers.CreekCluster(args.creek, workdir)
        cluster.name = "Creek cluster"
        clients = {"Creek": bench.PgClient("Creek", dev.dsn()),
                   "Creek cluster": bench.PgClient("Creek cluster", cluster.dsn())}
        on_cluster = clients["Creek cluster"]
        load = {}
        clients["Creek"].query(clickbench.create_table(), args.timeout)
        load["Creek"] = load_table(clients["Creek"], "hits", csv, rows, args, bench)
        on_cluster.query(clickbench.create_table(), args.timeout)
        on_cluster.query("ALTER TABLE hits SET (number_of_replicas = 0)", args.timeout)
        load["0 replicas"] = load_table(on_cluster, "hits", csv, rows, args, bench)
        pids = [dev.proc.pid] + [p.pid for p in cluster.procs.values()]
        # Both loads leave tantivy merging segments in the background; timing queries while
        # either engine still merges would measure the merges.
        waited = settle(pids)
        print(f"background merges settled after {waited:.0f} s", file=sys.stderr)
        shards = on_cluster.query(
            "SELECT node_id, count(*) FROM sys.shards WHERE table_name = 'hits' "
            "GROUP BY node_id ORDER BY node_id", args.timeout)
        print(f"cluster shards of hits: {shards}", file=sys.stderr)
        before, got = time_queries(args, clients, bench)
        # One replica more: every shard's files are copied to another node.
        on_cluster.query("ALTER TABLE hits SET (number_of_replicas = 1)", args.timeout)
        recovery_seconds = wait_green(on_cluster, "hits")
        copied, largest = on_cluster.query(
            "SELECT sum(size), max(size) FROM sys.shards WHERE table_name = 'hits' "
            "AND NOT \"primary\"", args.timeout)[0]
        recovery = (int(copied), int(largest), recovery_seconds)
        print(f"1 replica: {int(copied) / 1e6:.0f} MB copied in {recovery_seconds:.1f} s",
              file=sys.stderr)
        settle(pids)
        after, got_after = time_queries(args, {"1 replica": on_cluster}, bench)
        query_rows, problems = [], []
        for n in QUERIES:
            q = clickbench.QUERIES[n]
            for label, answer in (("0 replicas", got[(n, "Creek cluster")]),
                                  ("1 replica", got_after[(n, "1 replica")])):
                why = answers.same_answer(got[(n, "Creek")], answer, q.key,
                                          offset="OFFSET" in q.sql)
                if why and not q.any_groups:
                    problems.append(f"- Q{n}: the cluster ({label}) answers differently: {why}")
            query_rows.append((n, before[n]["Creek"], before[n]["Creek cluster"],
                               after[n]["1 replica"]))
        # Loading with a replica from the start: every row is written on two nodes.
        on_cluster.query(clickbench.create_table("hits_replicated"), args.timeout)
        on_cluster.query("ALTER TABLE hits_replicated SET (number_of_replicas = 1)",
                         args.timeout)
        wait_green(on_cluster, "hits_replicated", 120)
        load["1 replica"] = load_table(on_cluster, "hits_replicated", csv, rows, args, bench)
        on_cluster.query("DROP TABLE hits_replicated", args.timeout)
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
    text = report(args, rows, load, query_rows, recovery, lookup_rows, failovers, bench)
    return text, problems


def report(args, rows, load, query_rows, recovery, lookup_rows, failovers, bench):
    cores, memory = bench.machine()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## {now} · commit {bench.commit()} · cluster vs dev · scale {args.scale} "
        f"({rows:,} rows) · {cores} cores, {memory / (1 << 30):.1f} GiB",
        "",
        f"`creek dev` (one process) against a cluster of 3 voting coordinators and 3 data "
        f"nodes (six processes, all on this machine), binary `{args.creek}`. "
        f"Clients use coordinator c1. Queries: median of {args.runs} runs after {args.warmup} "
        "warm-up; ratio = cluster / dev (above 1: the cluster is slower). The cluster's `hits` "
        "has 0 replicas, then 1 (reads spread over both copies).",
        "",
        "| measurement | creek dev | cluster, 0 replicas | cluster, 1 replica | cluster/dev (0 · 1) |",
        "|---|---:|---:|---:|---:|",
        f"| COPY load, rows/s | {load['Creek']:,.0f} | {load['0 replicas']:,.0f} | "
        f"{load['1 replica']:,.0f} | {load['Creek'] / load['0 replicas']:.2f} · "
        f"{load['Creek'] / load['1 replica']:.2f} (time) |",
    ]
    for n, dev, zero, one in query_rows:
        sql = clickbench.QUERIES[n].sql
        lines.append(f"| Q{n} (ms): `{sql[:70]}{'…' if len(sql) > 70 else ''}` | "
                     f"{dev * 1000:,.1f} | {zero * 1000:,.1f} | {one * 1000:,.1f} | "
                     f"{zero / dev:.2f} · {one / dev:.2f} |")
    copied, largest, seconds = recovery
    lines.append(f"| `number_of_replicas = 1` on the loaded table: {copied / 1e6:,.0f} MB of new "
                 f"copies (largest shard {largest / 1e6:,.0f} MB) until GREEN | – | – | "
                 f"{seconds:.1f} s, {copied / 1e6 / max(seconds, 1e-9):,.0f} MB/s | |")
    for name, row in lookup_rows:
        dev, cluster = row.get("Creek"), row.get("Creek cluster")
        cells = [bench.fmt_cell(c, "tps") if c else "–" for c in (dev, cluster)]
        ratio = (f"{dev[1] / cluster[1]:.2f} (time)" if dev and cluster and dev[0] == "ok"
                 and cluster[0] == "ok" else "")
        lines.append(f"| {name} | {cells[0]} | – | {cells[1]} | {ratio} |")
    lines.append(f"| leader failover: kill -9 → DDL accepted, s (median of {len(failovers)}: "
                 f"{', '.join(f'{f:.2f}' for f in failovers)}) | – | – | "
                 f"{statistics.median(failovers):.2f} | |")
    return "\n".join(lines) + "\n"
