"""Arrow Flight SQL through real clients: the ADBC Flight SQL driver (queries, bound
parameters, updates, metadata, errors with their SQLSTATE, bulk ingest of 1M rows), Polars
over ADBC, and bare `pyarrow.flight` (GetFlightInfo then DoGet on every endpoint). On a
cluster of one coordinator and three data nodes a scan answers one endpoint per data node and
the rows pulled from the nodes equal pgwire's; forged, misdirected and expired tickets are
refused, and a client that drops a stream frees its query."""
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import psycopg
import pyarrow as pa
import pyarrow.flight as fl
import pytest

from conftest import creek_binary, free_port


# -- Flight SQL commands for bare pyarrow.flight (hand-encoded protobuf) ---------------------

def _varint(n):
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out += bytes([low | 0x80])
        else:
            return out + bytes([low])


def _bytes_field(number, data):
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _command(name, payload=b""):
    type_url = b"type.googleapis.com/arrow.flight.protocol.sql." + name.encode()
    return fl.FlightDescriptor.for_command(_bytes_field(1, type_url) + _bytes_field(2, payload))


def statement(sql):
    return _command("CommandStatementQuery", _bytes_field(1, sql.encode()))


def update(sql):
    return _command("CommandStatementUpdate", _bytes_field(1, sql.encode()))


def ingest(table, if_not_exist=1, if_exists=2):
    """CommandStatementIngest; the options default to CREATE if missing, APPEND if there."""
    options = _varint(1 << 3) + _varint(if_not_exist) + _varint(2 << 3) + _varint(if_exists)
    return _command("CommandStatementIngest", _bytes_field(1, options) + _bytes_field(2, table.encode()))


def primary_keys(table, schema=None):
    payload = (_bytes_field(2, schema.encode()) if schema else b"") + _bytes_field(3, table.encode())
    return _command("CommandGetPrimaryKeys", payload)


def fetch_all(client, info, options=None):
    """Every endpoint's rows, pulled in parallel from where each endpoint says."""
    def pull(endpoint):
        target = client
        if endpoint.locations:
            target = fl.FlightClient(endpoint.locations[0])
        return target.do_get(endpoint.ticket, options).read_all()
    with ThreadPoolExecutor(max_workers=max(1, len(info.endpoints))) as pool:
        tables = list(pool.map(pull, info.endpoints))
    return pa.concat_tables(tables) if tables else info.schema.empty_table()


def sorted_rows(table, key):
    return sorted(table.to_pylist(), key=lambda row: row[key])


COORDINATOR = fl.FlightCallOptions(headers=[(b"x-creek-endpoints", b"coordinator")])


# -- creek dev ------------------------------------------------------------------------------

@pytest.fixture()
def adbc(creek):
    with flight_sql.connect(creek.flight_uri, autocommit=True) as connection:
        yield connection


@pytest.fixture()
def pg(creek):
    with psycopg.connect(creek.dsn, autocommit=True) as connection:
        yield connection


TYPES_TABLE = """CREATE TABLE fl_types (
    id INT PRIMARY KEY, small SMALLINT, big BIGINT, r REAL, d DOUBLE PRECISION,
    n NUMERIC(12, 3), t TEXT, flag BOOLEAN, ts TIMESTAMP WITH TIME ZONE,
    tsn TIMESTAMP WITHOUT TIME ZONE, day DATE, addr IP, tags ARRAY(TEXT), nums INT[],
    o OBJECT AS (a INT, b TEXT), pos GEO_POINT)"""


def test_adbc_query_maps_every_type_and_binds_parameters(adbc, pg):
    pg.execute("DROP TABLE IF EXISTS fl_types")
    pg.execute(TYPES_TABLE)
    pg.execute("""INSERT INTO fl_types VALUES
        (1, 7, 9000000000, 1.5, 2.25, 123456.789, 'héllo', true, '2024-05-06T07:08:09.123456Z',
         '2024-05-06T07:08:09', '2024-05-06', '10.0.0.1', ['x', 'y'], [1, 2, 3],
         {a = 1, b = 'z'}, [13.4, 52.5]),
        (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)""")
    pg.execute("REFRESH TABLE fl_types")
    cur = adbc.cursor()
    cur.execute("SELECT * FROM fl_types ORDER BY id")
    table = cur.fetch_arrow_table()
    schema = table.schema
    assert schema.field("small").type == pa.int16()
    assert schema.field("id").type == pa.int32()
    assert schema.field("big").type == pa.int64()
    assert schema.field("r").type == pa.float32()
    assert schema.field("d").type == pa.float64()
    assert schema.field("n").type == pa.decimal128(12, 3)
    assert schema.field("ts").type == pa.timestamp("us", tz="+00:00")
    assert schema.field("tsn").type == pa.timestamp("us")
    assert schema.field("day").type == pa.date32()
    assert schema.field("tags").type == pa.list_(pa.string())
    assert schema.field("nums").type == pa.list_(pa.int32())
    assert pa.types.is_struct(schema.field("o").type)
    first, second = table.to_pylist()
    assert first["t"] == "héllo" and first["flag"] is True and first["addr"] == "10.0.0.1"
    assert str(first["n"]) == "123456.789"
    assert first["ts"].isoformat() == "2024-05-06T07:08:09.123456+00:00"
    assert first["tags"] == ["x", "y"] and first["nums"] == [1, 2, 3]
    assert first["o"]["a"] == 1 and first["o"]["b"] == "z"
    assert all(value is None for key, value in second.items() if key != "id")
    # The same values as pgwire, column by column.
    pg_row = pg.execute("SELECT id, big, t, day, tags FROM fl_types WHERE id = 1").fetchone()
    assert (first["id"], first["big"], first["t"], first["day"], first["tags"]) == pg_row

    cur.execute("SELECT id, t FROM fl_types WHERE id = ?", parameters=(1,))
    assert cur.fetch_arrow_table().to_pylist() == [{"id": 1, "t": "héllo"}]
    cur.execute("SELECT count(*) AS c FROM fl_types WHERE t = ? OR big > ?", parameters=("héllo", 5))
    assert cur.fetch_arrow_table().to_pylist() == [{"c": 1}]
    cur.close()


def test_adbc_updates_and_prepared_inserts(adbc, pg, creek):
    cur = adbc.cursor()
    cur.execute("DROP TABLE IF EXISTS fl_upd")
    cur.execute("CREATE TABLE fl_upd (id INT PRIMARY KEY, v TEXT)")
    cur.execute("INSERT INTO fl_upd VALUES (1, 'a'), (2, 'b')")
    assert cur.rowcount == 2
    cur.executemany("INSERT INTO fl_upd (id, v) VALUES (?, ?)", [(i, f"v{i}") for i in range(3, 503)])
    cur.execute("UPDATE fl_upd SET v = 'changed' WHERE id <= 10")
    assert cur.rowcount == 10
    cur.close()
    pg.execute("REFRESH TABLE fl_upd")
    assert pg.execute("SELECT count(*), count(*) FILTER (WHERE v = 'changed') FROM fl_upd").fetchone() == (502, 10)
    # A duplicate key among bound rows is an error with its SQLSTATE, not a silent skip; the
    # other rows stay written, as with a multi-row INSERT.
    cur = adbc.cursor()
    with pytest.raises(adbc_driver_manager.Error) as raised:
        cur.executemany("INSERT INTO fl_upd (id, v) VALUES (?, ?)", [(600, "x"), (1, "dup")])
    assert (b"x-sqlstate", b"23505") in raised.value.details
    cur.close()
    # CommandStatementUpdate through bare pyarrow.flight.
    client = fl.FlightClient(creek.flight_uri)
    writer, reader = client.do_put(update("DELETE FROM fl_upd WHERE id > 400"), pa.schema([]))
    writer.done_writing()
    metadata = reader.read()
    writer.close()
    assert decode_record_count(metadata.to_pybytes()) == 103  # 401..502 and 600


def decode_record_count(data):
    """DoPutUpdateResult { int64 record_count = 1; }"""
    assert data[0] == 0x08
    value, shift = 0, 0
    for byte in data[1:]:
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return value


def test_adbc_metadata(adbc, pg, creek):
    pg.execute("DROP TABLE IF EXISTS fl_meta")
    pg.execute("CREATE TABLE fl_meta (k TEXT, n INT, v DOUBLE PRECISION, PRIMARY KEY (k, n))")
    info = adbc.adbc_get_info()
    assert info["vendor_name"] == "Creek"
    assert info["vendor_version"]
    assert set(adbc.adbc_get_table_types()) == {"BASE TABLE", "VIEW"}
    schema = adbc.adbc_get_table_schema("fl_meta", db_schema_filter="doc")
    assert schema.names == ["k", "n", "v"]
    assert schema.field("n").type == pa.int32()
    objects = adbc.adbc_get_objects(depth="all", table_name_filter="fl_meta").read_all().to_pylist()
    (catalog,) = objects
    assert catalog["catalog_name"] == "crate"
    tables = [(s["db_schema_name"], t["table_name"], [c["column_name"] for c in t["table_columns"]])
              for s in catalog["catalog_db_schemas"] for t in s["db_schema_tables"] or []]
    assert tables == [("doc", "fl_meta", ["k", "n", "v"])]
    schemas = adbc.adbc_get_objects(depth="db_schemas").read_all().to_pylist()[0]["catalog_db_schemas"]
    assert {"doc", "sys", "information_schema", "pg_catalog"} <= {s["db_schema_name"] for s in schemas}
    client = fl.FlightClient(creek.flight_uri)
    keys = fetch_all(client, client.get_flight_info(primary_keys("fl_meta", "doc")))
    assert [(r["column_name"], r["key_sequence"]) for r in keys.to_pylist()] == [("k", 1), ("n", 2)]
    types = fetch_all(client, client.get_flight_info(_command("CommandGetXdbcTypeInfo")))
    assert {"integer", "text", "timestamp with time zone", "object"} <= set(types.column("type_name").to_pylist())


def test_errors_carry_sqlstate(adbc, creek):
    cur = adbc.cursor()
    for sql, state in [("SELEC 1", b"42601"), ("SELECT * FROM fl_missing", b"42P01"),
                       ("SELECT 1/0", b"22012"), ("SET search_path = x", b"0A000")]:
        with pytest.raises(adbc_driver_manager.Error) as raised:
            cur.execute(sql)
            cur.fetch_arrow_table()
        assert (b"x-sqlstate", state) in raised.value.details, (sql, raised.value)
    cur.close()
    client = fl.FlightClient(creek.flight_uri)
    with pytest.raises(pa.ArrowKeyError, match="fl_missing"):  # pyarrow's name for NOT_FOUND
        client.get_flight_info(statement("SELECT * FROM fl_missing"))
    # A ticket the coordinator never issued, and garbage.
    with pytest.raises((fl.FlightError, pa.ArrowInvalid)):
        client.do_get(fl.Ticket(b"\x00\x01garbage")).read_all()
    # The server is still fine.
    info = client.get_flight_info(statement("SELECT 41 + 1 AS answer"))
    assert fetch_all(client, info).to_pylist() == [{"answer": 42}]


def test_ingest_one_million_rows_and_modes(adbc, pg):
    cur = adbc.cursor()
    cur.execute("DROP TABLE IF EXISTS fl_ingest")
    count = 1_000_000
    ids = pa.array(range(count), pa.int64())
    table = pa.table({
        "id": ids,
        "grp": pa.array([i % 97 for i in range(count)], pa.int32()),
        "name": pa.array([f"n{i % 1000}" for i in range(count)]),
        "at": pa.array([i * 1_000_000 for i in range(count)], pa.timestamp("us", tz="UTC")),
    })
    started = time.perf_counter()
    # ADBC's client sends no message over 16 MiB: the table goes as several batches.
    batches = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=100_000))
    assert cur.adbc_ingest("fl_ingest", batches, mode="create") == count
    seconds = time.perf_counter() - started
    print(f"ingested {count} rows in {seconds:.1f} s ({count / seconds:,.0f} rows/s)")
    assert pg.execute("SELECT count(*), sum(id), sum(grp), count(DISTINCT name) FROM fl_ingest").fetchone() == (
        count, count * (count - 1) // 2, sum(i % 97 for i in range(count)), 1000)
    assert pg.execute("SELECT data_type FROM information_schema.columns WHERE table_name = 'fl_ingest' "
                      "AND column_name = 'at'").fetchone() == ("timestamp with time zone",)
    small = pa.table({"id": pa.array([10**9, 10**9 + 1], pa.int64()), "name": ["x", "y"]})
    assert cur.adbc_ingest("fl_ingest", small, mode="append") == 2
    with pytest.raises(adbc_driver_manager.Error) as raised:
        cur.adbc_ingest("fl_ingest", small, mode="create")
    assert (b"x-sqlstate", b"42P07") in raised.value.details
    with pytest.raises(adbc_driver_manager.Error) as raised:
        cur.adbc_ingest("fl_ingest_missing", small, mode="append")
    assert (b"x-sqlstate", b"42P01") in raised.value.details
    with pytest.raises(adbc_driver_manager.Error) as raised:
        cur.adbc_ingest("fl_ingest", pa.table({"nope": [1]}), mode="append")
    assert (b"x-sqlstate", b"42703") in raised.value.details
    assert cur.adbc_ingest("fl_ingest", small, mode="replace") == 2
    assert pg.execute("SELECT count(*) FROM fl_ingest").fetchone() == (2,)
    cur.execute("DROP TABLE fl_ingest")
    cur.close()


def test_ingest_refuses_what_it_cannot_take_and_keeps_the_table(adbc, pg, creek):
    cur = adbc.cursor()
    cur.execute("DROP TABLE IF EXISTS fl_keep")
    assert cur.adbc_ingest("fl_keep", pa.table({"id": [1, 2, 3]}), mode="create") == 3
    # A schema no table can have (a system column's name) fails before the table is dropped.
    for bad in (pa.table({"_id": ["x"]}), pa.table({"b": pa.array([b"\x00"], pa.binary())})):
        with pytest.raises(adbc_driver_manager.Error):
            cur.adbc_ingest("fl_keep", bad, mode="replace")
    cur.close()
    assert pg.execute("SELECT count(*) FROM fl_keep").fetchone() == (3,)
    # Compressed IPC bodies are refused (their claimed size is what Arrow would allocate).
    client = fl.FlightClient(creek.flight_uri)
    compressed = fl.FlightCallOptions(write_options=pa.ipc.IpcWriteOptions(compression="zstd"))
    table = pa.table({"id": pa.array(range(1000), pa.int64())})
    writer, reader = client.do_put(ingest("fl_keep"), table.schema, options=compressed)
    with pytest.raises(pa.ArrowNotImplementedError, match="compressed"):
        writer.write_table(table)
        writer.done_writing()
        reader.read()
        writer.close()  # where pyarrow reports the call's status
    assert pg.execute("SELECT count(*) FROM fl_keep").fetchone() == (3,)
    # Uncompressed, the same command works.
    writer, reader = client.do_put(ingest("fl_keep"), table.schema)
    writer.write_table(table)
    writer.done_writing()
    assert decode_record_count(reader.read().to_pybytes()) == 1000
    writer.close()


def test_polars_reads_over_adbc(creek, pg):
    polars = pytest.importorskip("polars")
    pg.execute("DROP TABLE IF EXISTS fl_polars")
    pg.execute("CREATE TABLE fl_polars (a INT, b TEXT)")
    pg.execute("INSERT INTO fl_polars VALUES (1, 'x'), (2, 'y')")
    pg.execute("REFRESH TABLE fl_polars")
    with flight_sql.connect(creek.flight_uri, autocommit=True) as connection:
        frame = polars.read_database("SELECT a, b FROM fl_polars ORDER BY a", connection)
    assert frame.to_dicts() == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]


def test_dev_scan_goes_to_the_data_node(creek, pg):
    pg.execute("DROP TABLE IF EXISTS fl_scan")
    pg.execute("CREATE TABLE fl_scan (id INT PRIMARY KEY, v TEXT) CLUSTERED INTO 4 SHARDS")
    with pg.cursor() as cur:
        cur.executemany("INSERT INTO fl_scan VALUES (%s, %s)", [(i, f"v{i}") for i in range(500)])
    pg.execute("REFRESH TABLE fl_scan")
    client = fl.FlightClient(creek.flight_uri)
    direct = client.get_flight_info(statement("SELECT id, v FROM fl_scan WHERE id >= 100"))
    (endpoint,) = direct.endpoints
    assert endpoint.locations and f":{creek.flight_port}" not in str(endpoint.locations[0])
    via = client.get_flight_info(statement("SELECT id, v FROM fl_scan WHERE id >= 100"), COORDINATOR)
    assert [e.locations for e in via.endpoints] == [[]]
    expected = pg.execute("SELECT id, v FROM fl_scan WHERE id >= 100").fetchall()
    for info in (direct, via):
        assert info.schema.names == ["id", "v"]
        rows = sorted_rows(fetch_all(client, info), "id")
        assert [(r["id"], r["v"]) for r in rows] == sorted(expected)
    # Expressions DataFusion computes as string views arrive as plain strings, both ways.
    for options in (None, COORDINATOR):
        info = client.get_flight_info(statement("SELECT id, id::text AS t FROM fl_scan"), options)
        assert info.schema.field("t").type == pa.string()
        table = fetch_all(client, info)
        assert table.schema.field("t").type == pa.string()
        assert sorted(table.column("t").to_pylist(), key=int) == [str(i) for i in range(500)]
    # An aggregate needs a merge: one endpoint, here.
    merged = client.get_flight_info(statement("SELECT count(*) AS c FROM fl_scan"))
    assert [e.locations for e in merged.endpoints] == [[]]
    assert fetch_all(client, merged).to_pylist() == [{"c": 500}]
    # An error on the data node reaches the client with its SQLSTATE.
    failing = client.get_flight_info(statement("SELECT id, 10 / (id - id) AS boom FROM fl_scan"))
    assert all(e.locations for e in failing.endpoints)
    with flight_sql.connect(creek.flight_uri, autocommit=True) as connection:
        cur = connection.cursor()
        with pytest.raises(adbc_driver_manager.Error) as raised:
            cur.execute("SELECT id, 10 / (id - id) AS boom FROM fl_scan")
            cur.fetch_arrow_table()
        assert (b"x-sqlstate", b"22012") in raised.value.details
        cur.close()
    # An altered ticket is refused by the data node.
    forged = bytearray(endpoint.ticket.ticket)
    forged[len(forged) // 2] ^= 0x01
    with pytest.raises(fl.FlightUnauthenticatedError, match="signature"):
        fl.FlightClient(endpoint.locations[0]).do_get(fl.Ticket(bytes(forged))).read_all()
    with pytest.raises(fl.FlightUnauthenticatedError):
        fl.FlightClient(endpoint.locations[0]).do_get(fl.Ticket(b"not a ticket at all")).read_all()


def test_dropped_stream_frees_the_query(creek, pg):
    pg.execute("DROP TABLE IF EXISTS fl_big")
    pg.execute("CREATE TABLE fl_big (id BIGINT, pad TEXT)")
    with flight_sql.connect(creek.flight_uri, autocommit=True) as connection:
        cur = connection.cursor()
        ids = pa.array(range(300_000), pa.int64())
        big = pa.table({"id": ids, "pad": pa.array(["p" * 100] * 300_000)})
        # ADBC's client sends no message over 16 MiB: the table goes as several batches.
        cur.adbc_ingest("fl_big", pa.RecordBatchReader.from_batches(
            big.schema, big.to_batches(max_chunksize=50_000)), mode="append")
        cur.close()
    client = fl.FlightClient(creek.flight_uri)
    for options in (COORDINATOR, None):
        info = client.get_flight_info(statement("SELECT * FROM fl_big"), options)
        endpoint = info.endpoints[0]
        target = fl.FlightClient(endpoint.locations[0]) if endpoint.locations else client
        reader = target.do_get(endpoint.ticket)
        reader.read_chunk()
        reader.cancel()
        if target is not client:
            target.close()
    # The coordinator's statement leaves sys.jobs once its stream is gone.
    deadline = time.time() + 10
    while time.time() < deadline:
        jobs = pg.execute("SELECT count(*) FROM sys.jobs WHERE stmt LIKE 'SELECT * FROM fl_big%'").fetchone()[0]
        if jobs == 0:
            break
        time.sleep(0.2)
    assert jobs == 0
    assert pg.execute("SELECT count(*) FROM fl_big").fetchone() == (300_000,)


# -- a cluster: one coordinator, three data nodes -----------------------------------------

class Cluster:
    def __init__(self, ticket_ttl="3s"):
        self.dir = tempfile.mkdtemp(prefix="creek-flight-cluster-")
        self.transport = free_port()
        self.pg_port = free_port()
        self.flight_port = free_port()
        self.procs = []
        self._start("c1", ["coordinator", "--node-id", "c1", "--data-dir", f"{self.dir}/c1",
                           "--bind", "127.0.0.1", "--voters", f"c1=127.0.0.1:{self.transport}",
                           "--transport-port", str(self.transport), "--pg-port", str(self.pg_port),
                           "--http-port", str(free_port()), "--flight-port", str(self.flight_port),
                           "--flight-ticket-ttl", ticket_ttl])
        for name in ("d1", "d2", "d3"):
            self._start(name, ["datanode", "--node-id", name, "--data-dir", f"{self.dir}/{name}",
                               "--bind", "127.0.0.1", "--join", f"127.0.0.1:{self.transport}",
                               "--transport-port", str(free_port()), "--flight-port", "0"])
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=2) as conn:
                    if conn.execute("SELECT count(*) FROM sys.nodes WHERE alive").fetchone()[0] >= 4:
                        return
            except psycopg.Error:
                pass
            for proc in self.procs:
                assert proc.poll() is None, "a cluster node exited"
            time.sleep(0.2)
        raise RuntimeError("the cluster did not form")

    def _start(self, name, args):
        log = open(os.path.join(self.dir, f"{name}.log"), "wb")
        env = dict(os.environ, CREEK_CLUSTER_SECRET="flight-test-cluster-secret")
        self.procs.append(subprocess.Popen([creek_binary(), *args], stdout=subprocess.DEVNULL, stderr=log, env=env))

    @property
    def dsn(self):
        return f"host=127.0.0.1 port={self.pg_port} user=crate dbname=doc"

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_cluster_reads_each_data_node_in_parallel():
    cluster = Cluster(ticket_ttl="3s")
    try:
        with psycopg.connect(cluster.dsn, autocommit=True) as pg:
            pg.execute("CREATE TABLE fl_wide (id INT PRIMARY KEY, g INT, v TEXT) "
                       "CLUSTERED INTO 6 SHARDS WITH (number_of_replicas = 0)")
            with pg.cursor() as cur:
                cur.executemany("INSERT INTO fl_wide VALUES (%s, %s, %s)",
                                [(i, i % 7, f"value {i}") for i in range(3000)])
            pg.execute("REFRESH TABLE fl_wide")
            holders = pg.execute("SELECT count(DISTINCT node_id) FROM sys.shards "
                                 "WHERE table_name = 'fl_wide'").fetchone()[0]
            assert holders == 3
            expected = sorted(pg.execute("SELECT id, g, v FROM fl_wide WHERE g <> 3").fetchall())
            expected_all = pg.execute("SELECT count(*) FROM fl_wide").fetchone()[0]
        client = fl.FlightClient(f"grpc://127.0.0.1:{cluster.flight_port}")
        info = client.get_flight_info(statement("SELECT id, g, v FROM fl_wide WHERE g <> 3"))
        locations = [str(e.locations[0]) for e in info.endpoints]
        assert len(locations) == 3 and len(set(locations)) == 3, locations
        rows = sorted_rows(fetch_all(client, info), "id")
        assert [(r["id"], r["g"], r["v"]) for r in rows] == expected
        # ADBC pulls the endpoints itself; the same rows.
        with flight_sql.connect(f"grpc://127.0.0.1:{cluster.flight_port}", autocommit=True) as adbc:
            cur = adbc.cursor()
            cur.execute("SELECT * FROM fl_wide")
            assert cur.fetch_arrow_table().num_rows == expected_all
            cur.close()
        # A ticket is good only at the node it was issued for.
        first, second = info.endpoints[0], info.endpoints[1]
        with pytest.raises(fl.FlightUnauthenticatedError, match="issued for data node"):
            fl.FlightClient(second.locations[0]).do_get(first.ticket).read_all()
        # And only until it expires (the coordinator's result too).
        stale = client.get_flight_info(statement("SELECT id FROM fl_wide"))
        merged = client.get_flight_info(statement("SELECT max(id) AS m FROM fl_wide"))
        time.sleep(3.5)
        with pytest.raises(fl.FlightTimedOutError, match="expired"):
            fl.FlightClient(stale.endpoints[0].locations[0]).do_get(stale.endpoints[0].ticket).read_all()
        with pytest.raises(pa.ArrowKeyError, match="expired"):
            client.do_get(merged.endpoints[0].ticket).read_all()
        # A new one works.
        fresh = client.get_flight_info(statement("SELECT id FROM fl_wide"))
        assert fetch_all(client, fresh).num_rows == expected_all
    finally:
        cluster.stop()
