"""Partitioned tables through real clients: EXPLAIN names the partitions a query reads,
SHOW CREATE TABLE keeps PARTITIONED BY, psycopg and HTTP bulk writes create partitions,
a dropped partition's shard directories leave the disk, and partitions, their rows and
their own settings survive a kill -9 and a restart."""
import json
import os
import shutil
import signal
import time

import psycopg
import pytest

from conftest import Creek, post_sql

CREATE = """CREATE TABLE {name} (
    id INTEGER, ts TIMESTAMP WITH TIME ZONE,
    day TIMESTAMP WITH TIME ZONE GENERATED ALWAYS AS date_trunc('day', ts),
    value DOUBLE PRECISION, PRIMARY KEY (id, day)
) CLUSTERED INTO 2 SHARDS PARTITIONED BY (day)"""


def post(creek, body):
    return post_sql(creek, body)


@pytest.fixture()
def conn(creek):
    with psycopg.connect(creek.dsn, autocommit=True) as connection:
        yield connection


def explain(conn, sql):
    return "\n".join(row[1] for row in conn.execute("EXPLAIN " + sql).fetchall())


def test_pruning_is_explained_and_answers_agree(conn):
    conn.execute("DROP TABLE IF EXISTS part_explain")
    conn.execute(CREATE.format(name="part_explain"))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO part_explain (id, ts, value) VALUES (%s, %s, %s)",
                        [(i, f"2024-05-{1 + i % 5:02d}T{i % 24:02d}:00:00Z", i) for i in range(100)])
    conn.execute("REFRESH TABLE part_explain")
    assert conn.execute("SELECT count(*) FROM information_schema.table_partitions "
                        "WHERE table_name = 'part_explain'").fetchone()[0] == 5
    plan = explain(conn, "SELECT sum(value) FROM part_explain WHERE day >= '2024-05-04'")
    assert "partitions=2/5 [(day=2024-05-04T00:00:00+00:00), (day=2024-05-05T00:00:00+00:00)]" in plan
    pruned = conn.execute("SELECT sum(value) FROM part_explain WHERE day >= '2024-05-04'").fetchone()[0]
    assert pruned == sum(i for i in range(100) if 1 + i % 5 >= 4)
    plan = explain(conn, "SELECT * FROM part_explain WHERE value > 3")
    assert "partitions=5/5" in plan
    # The same question without pruning (a predicate on a non-partition column) agrees.
    unpruned = conn.execute(
        "SELECT sum(value) FROM part_explain WHERE date_part('day', ts) >= 4").fetchone()[0]
    assert unpruned == pruned
    # A bound on `ts` prunes the `day` partitions it computes (date_trunc never decreases).
    plan = explain(conn, "SELECT count(*) FROM part_explain WHERE ts > '2024-05-03T12:00:00Z'")
    assert "partitions=3/5" in plan, plan
    assert conn.execute("SELECT count(*) FROM part_explain WHERE ts > '2024-05-03T12:00:00Z'").fetchone()[0] == \
        sum(1 for i in range(100) if (1 + i % 5, i % 24) > (3, 12))
    shown = conn.execute("SHOW CREATE TABLE part_explain").fetchone()[0]
    assert 'PARTITIONED BY ("day")' in shown
    assert 'CLUSTERED INTO 2 SHARDS' in shown


def test_http_bulk_creates_partitions_and_delete_drops_them(creek, conn):
    conn.execute("DROP TABLE IF EXISTS part_http")
    conn.execute(CREATE.format(name="part_http"))
    status, body = post(creek, {
        "stmt": "INSERT INTO part_http (id, ts, value) VALUES (?, ?, ?)",
        "bulk_args": [[i, f"2024-06-{1 + i % 3:02d}T12:00:00Z", i] for i in range(30)],
    })
    assert status == 200, body
    assert [r["rowcount"] for r in body["results"]] == [1] * 30
    status, body = post(creek, {"stmt": "SELECT partition_ident, \"values\" FROM "
                                        "information_schema.table_partitions WHERE table_name = 'part_http' "
                                        "ORDER BY 2"})
    assert status == 200, body
    assert [json.loads(r[1]) for r in body["rows"]] == [
        {"day": f"2024-06-0{d}T00:00:00+00:00"} for d in (1, 2, 3)]
    conn.execute("REFRESH TABLE part_http")
    cur = conn.execute("DELETE FROM part_http WHERE day = %s", ("2024-06-02T00:00:00Z",))
    assert cur.rowcount == 10
    assert conn.execute("SELECT count(*) FROM part_http").fetchone()[0] == 20
    assert conn.execute("SELECT count(*) FROM sys.shards WHERE table_name = 'part_http'"
                        " AND \"primary\"").fetchone()[0] == 4


def test_partitions_survive_kill_and_restart():
    server = Creek()
    server.start()
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(CREATE.format(name="part_restart"))
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO part_restart (id, ts, value) VALUES (%s, %s, %s)",
                                [(i, f"2024-07-{1 + i % 4:02d}T08:00:00Z", i) for i in range(40)])
            conn.execute("ALTER TABLE part_restart PARTITION (day = '2024-07-01T00:00:00Z') "
                         "SET (number_of_replicas = 0)")
            conn.execute("DELETE FROM part_restart WHERE day = '2024-07-04T00:00:00Z'")
            (table_id,) = {r[0].split(".")[0] for r in conn.execute(
                "SELECT allocation_id FROM sys.shards WHERE table_name = 'part_restart'")}
        shard_dirs = os.path.join(server.dir, "data")
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        server.start()
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("REFRESH TABLE part_restart")
            rows = conn.execute("SELECT id FROM part_restart ORDER BY id").fetchall()
            assert [r[0] for r in rows] == [i for i in range(40) if i % 4 != 3]
            assert conn.execute(
                "SELECT id FROM part_restart WHERE id = 4 AND day = '2024-07-01T00:00:00Z'").fetchall() == [(4,)]
            partitions = conn.execute(
                "SELECT \"values\", settings FROM information_schema.table_partitions "
                "WHERE table_name = 'part_restart' ORDER BY 1").fetchall()
            assert [json.loads(v)["day"][:10] for v, _ in partitions] == ["2024-07-01", "2024-07-02", "2024-07-03"]
            assert json.loads(partitions[0][1]) == {"number_of_replicas": "0"}
        # The dropped partition's shards (numbers 6 and 7) are gone from the disk.
        def held():
            return {d for root, dirs, _ in os.walk(shard_dirs) for d in dirs
                    if root.endswith(os.path.join("tables", table_id))}
        deadline = time.time() + 10
        while time.time() < deadline and held() & {"6", "7"}:
            time.sleep(0.2)
        assert held() == {"0", "1", "2", "3", "4", "5"}
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


def test_partitions_stop_at_the_shard_limit():
    """A write that would create more shards than cluster.max_shards_per_node allows is
    refused with 54000 before any of its rows is stored; the cluster keeps serving."""
    server = Creek()
    server.start()
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute('SET GLOBAL "cluster.max_shards_per_node" = 10')
            conn.execute(CREATE.format(name="part_limit"))
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO part_limit (id, ts, value) VALUES (%s, %s, %s)",
                                [(d, f"2024-08-{d:02d}T00:00:00Z", d) for d in range(1, 6)])
            with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="max_shards_per_node"):
                conn.execute("INSERT INTO part_limit (id, ts, value) VALUES (6, '2024-08-06T00:00:00Z', 6)")
            conn.execute("REFRESH TABLE part_limit")
            assert conn.execute("SELECT count(*) FROM part_limit").fetchone()[0] == 5
            with pytest.raises(psycopg.errors.InvalidParameterValue):
                conn.execute('SET GLOBAL "cluster.max_shards_per_node" = 0')
            conn.execute('RESET GLOBAL "cluster.max_shards_per_node"')
            conn.execute("INSERT INTO part_limit (id, ts, value) VALUES (6, '2024-08-06T00:00:00Z', 6)")
            conn.execute("REFRESH TABLE part_limit")
            assert conn.execute("SELECT count(*) FROM part_limit").fetchone()[0] == 6
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)
