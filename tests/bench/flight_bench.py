"""The Arrow Flight SQL workload: `SELECT * FROM hits` exported as Arrow, and the hits rows
ingested from Arrow, against what a client of PostgreSQL or DuckDB does for the same.

Creek is reached through the ADBC Flight SQL driver (`adbc_driver_flightsql.dbapi`), as an
application would reach it, on the coordinator's `--flight-port`:

  * export, multi-endpoint: GetFlightInfo returns one endpoint per data node, each with the
    data node's Flight location and a signed ticket, and the driver reads the endpoints in
    parallel;
  * export, single endpoint: the same query with the call header `x-creek-endpoints:
    coordinator`, so the coordinator streams every row itself (one endpoint, no location);
  * ingest: `cursor.adbc_ingest(..., mode="create")`, Flight SQL's CommandStatementIngest.

Peers: PostgreSQL through psycopg (its default text format, rows converted to Python
objects); DuckDB's own in-process Arrow export and import. MB are Arrow in-memory bytes of
the result (`Table.nbytes`); PostgreSQL sends no Arrow, so its MB/s counts Creek's bytes for
the same rows. Every export is checked (row count, column count, and a fingerprint of the
values against DuckDB's), so a short or wrong answer is a failure, not a fast result.
"""
import statistics
import sys

import pyarrow as pa
import pyarrow.compute as pc

EXPORT_SQL = "SELECT * FROM hits"
ENDPOINTS_HEADER = "x-creek-endpoints"
# GetFlightInfo (planning) gets `--timeout` like any query; the DoGets of a whole export and
# an ingest, which at 10m rows move gigabytes, get the hour COPY gets elsewhere in the bench.
LONG_CALL_SECONDS = 3600
# Each record batch of an ingest travels as one gRPC message, and ADBC's Go client sends no
# message over 16 MiB unless told otherwise (Creek's coordinator takes up to 256 MiB); DuckDB
# hands out batches of up to a million rows (hundreds of MB of hits), so the ingest sends
# batches of about this.
INGEST_BATCH_BYTES = 12 << 20


def connect(port, timeout, endpoints=None):
    """An autocommit ADBC connection to Creek's Flight SQL port; `endpoints` is sent as the
    `x-creek-endpoints` header on every call (the driver's rpc.call_header option)."""
    import adbc_driver_flightsql.dbapi as flightsql
    from adbc_driver_flightsql import DatabaseOptions

    db_kwargs = {
        DatabaseOptions.TIMEOUT_QUERY.value: str(float(timeout)),
        DatabaseOptions.TIMEOUT_FETCH.value: str(float(LONG_CALL_SECONDS)),
        DatabaseOptions.TIMEOUT_UPDATE.value: str(float(LONG_CALL_SECONDS)),
    }
    if endpoints:
        db_kwargs[DatabaseOptions.RPC_CALL_HEADER_PREFIX.value + ENDPOINTS_HEADER] = endpoints
    # Each statement stands alone, as on the pgwire clients; without autocommit the DB-API
    # would try to switch it off (and warn when the server has no transactions).
    return flightsql.connect(f"grpc://127.0.0.1:{port}", db_kwargs=db_kwargs, autocommit=True)


def one_line(error):
    """An error as one line for the report (driver errors carry the server's multi-line
    detail)."""
    return " ".join(str(error).split())[:300] or type(error).__name__


# ---------------------------------------------------------------------------------------
# Which endpoints GetFlightInfo hands out


def _varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _bytes_field(number, payload):
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def statement_query(sql):
    """A Flight SQL CommandStatementQuery {query = sql} packed in a google.protobuf.Any, the
    bytes of a command FlightDescriptor; written by hand so the bench needs no protobuf."""
    command = _bytes_field(1, sql.encode())
    return (_bytes_field(1, b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery")
            + _bytes_field(2, command))


def probe_endpoints(port, timeout, endpoints=None):
    """The endpoints GetFlightInfo returns for EXPORT_SQL, as a list of location lists (an
    empty one: fetch from the coordinator asked), or the error as text. Asked through
    pyarrow's plain Flight client, since ADBC keeps the FlightInfo to itself; the tickets are
    never redeemed."""
    from pyarrow import flight

    client = flight.FlightClient(f"grpc://127.0.0.1:{port}")
    try:
        headers = [(ENDPOINTS_HEADER.encode(), endpoints.encode())] if endpoints else []
        info = client.get_flight_info(
            flight.FlightDescriptor.for_command(statement_query(EXPORT_SQL)),
            flight.FlightCallOptions(timeout=timeout, headers=headers))
        return [[location.uri.decode() for location in endpoint.locations]
                for endpoint in info.endpoints]
    except (flight.FlightError, pa.ArrowException) as e:
        return f"GetFlightInfo failed: {one_line(e)[:120]}"
    finally:
        client.close()


def describe(endpoints):
    """The endpoints in words: "1 endpoint, served by the coordinator", "3 endpoints at 3
    locations", ..."""
    if isinstance(endpoints, str):
        return endpoints
    count = len(endpoints)
    if not count:
        return "no endpoints"
    here = sum(1 for locations in endpoints if not locations)
    elsewhere = len({location for locations in endpoints for location in locations})
    served = "served by the coordinator" if here else ""
    located = f"at {elsewhere} location{'s' * (elsewhere != 1)}" if elsewhere else ""
    if here and elsewhere:
        return f"{count} endpoints: {here} {served}, {count - here} {located}"
    return f"{count} endpoint{'s' * (count != 1)}{', ' if here else ' '}{served or located}"


def endpoints_unexpected(endpoints, single):
    """Why the endpoints do not fit the row they are measured for, or None. Single: one
    endpoint, no location. Multi-endpoint: `SELECT *` needs no merge, so every endpoint
    names a data node. An endpoint list that could not be probed is not held against it."""
    if isinstance(endpoints, str):
        return None
    gave = f"GetFlightInfo gave {describe(endpoints)}"
    if single and (len(endpoints) != 1 or endpoints[0]):
        return f"asked for the coordinator's single endpoint, {gave}"
    if not single and (not endpoints or any(not locations for locations in endpoints)):
        return f"a plain scan should be read from the data nodes, {gave}"
    return None


# ---------------------------------------------------------------------------------------
# Export


def fingerprint(table):
    """Row count, column count, sum(CounterID) and the UTF-8 bytes of URL, Title and
    SearchPhrase: cheap to compute from Arrow and from SQL, and off if any row or value is
    lost or mangled. Columns are found by lower-case name (Creek folds unquoted names)."""
    by_name = {name.lower(): i for i, name in enumerate(table.column_names)}
    missing = [c for c in ("counterid", "url", "title", "searchphrase") if c not in by_name]
    if missing:
        return f"no column {', '.join(missing)} in {table.column_names[:8]}..."
    values = [table.num_rows, table.num_columns,
              pc.sum(table.column(by_name["counterid"]).cast(pa.int64())).as_py() or 0]
    for name in ("url", "title", "searchphrase"):
        # binary_length has no kernel for string_view, for one; cast, any text column has.
        text = table.column(by_name[name]).cast(pa.large_string())
        values.append(pc.sum(pc.binary_length(text)).as_py() or 0)
    return tuple(values)


def reference_fingerprint(duck):
    count, counters, url, title, phrase = duck.conn.execute(
        "SELECT count(*), sum(CounterID), sum(strlen(URL)), sum(strlen(Title)), "
        "sum(strlen(SearchPhrase)) FROM hits").fetchone()
    columns = len(duck.conn.execute("SELECT * FROM hits LIMIT 0").description)
    return (count, columns, int(counters), int(url), int(title), int(phrase))


def fetch_creek(conn):
    """One export through ADBC: GetFlightInfo (after the DB-API's prepare, skipped when the
    server answers UNIMPLEMENTED) and every endpoint's DoGet, into one Arrow table. The
    driver's gRPC limit of 16 MiB per message is left as an application leaves it: a record
    batch larger than that fails the row."""
    with conn.cursor() as cur:
        cur.execute(EXPORT_SQL)
        return cur.fetch_arrow_table()


def fetch_postgres(pg):
    """The rows as a psycopg application gets them. Converted in slices rather than by one
    fetchall(): the same conversion work, but 10m rows of 105 Python objects each would not
    fit in memory at once. libpq still receives the whole result first, as for fetchall()."""
    count = 0
    with pg.conn.cursor() as cur:
        cur.execute(EXPORT_SQL)
        while batch := cur.fetchmany(50_000):
            count += len(batch)
    return count


def export(args, rows, creek, clients, timed):
    """Times the export on every engine, interleaved run by run; returns the two report rows
    (single endpoint, multi-endpoint), each {engine: cell}."""
    import adbc_driver_manager

    pg, duck = clients["PostgreSQL"], clients["DuckDB"]
    reference = reference_fingerprint(duck)
    if reference[0] != rows:
        raise SystemExit(f"DuckDB holds {reference[0]} hits rows, not {rows}")
    modes = {"single": "coordinator", "multi": None}
    probes = {m: probe_endpoints(creek.flight_port, args.timeout, h) for m, h in modes.items()}
    for mode, endpoints in probes.items():
        print(f"Flight {mode}-endpoint export: {describe(endpoints)}", file=sys.stderr, flush=True)
    conns, failed = {}, {}
    for mode, header in modes.items():
        try:
            conns[mode] = connect(creek.flight_port, args.timeout, header)
        except adbc_driver_manager.Error as e:
            failed[mode] = ("FAILED", f"connect: {one_line(e)}")
    times = {name: [] for name in ("single", "multi", "PostgreSQL", "DuckDB")}
    nbytes = {}
    try:
        for run in range(args.warmup + args.runs):
            for mode, conn in conns.items():
                if mode in failed:
                    continue
                try:
                    seconds, table = timed(lambda: fetch_creek(conn))
                except adbc_driver_manager.Error as e:
                    failed[mode] = ("FAILED", one_line(e))
                    continue
                problem = None
                if mode not in nbytes:  # the first answer is checked, as in analytics
                    got = fingerprint(table)
                    if got != reference:
                        problem = ("WRONG", got if isinstance(got, str) else
                                   f"(rows, columns, sum(CounterID), bytes of URL, Title, "
                                   f"SearchPhrase) = {got}, DuckDB has {reference}")
                    else:
                        nbytes[mode] = table.nbytes
                        print(f"Flight {mode}-endpoint export: {table.num_rows:,} rows, "
                              f"{table.nbytes:,} Arrow bytes, types "
                              f"{sorted({str(f.type) for f in table.schema})}",
                              file=sys.stderr, flush=True)
                elif table.num_rows != rows:
                    problem = ("WRONG", f"{table.num_rows} rows, expected {rows}")
                del table  # at 10m rows, gigabytes: never two exports alive at once
                if problem:
                    failed[mode] = problem
                elif run >= args.warmup:
                    times[mode].append(seconds)
            seconds, count = timed(lambda: fetch_postgres(pg))
            if count != rows:
                raise SystemExit(f"psycopg fetched {count} hits rows from PostgreSQL, not {rows}")
            if run >= args.warmup:
                times["PostgreSQL"].append(seconds)
            seconds, table = timed(lambda: duck.conn.sql(EXPORT_SQL).to_arrow_table())
            if table.num_rows != rows:
                raise SystemExit(f"DuckDB exported {table.num_rows} hits rows, not {rows}")
            nbytes["DuckDB"] = table.nbytes
            del table
            if run >= args.warmup:
                times["DuckDB"].append(seconds)
    finally:
        for conn in conns.values():
            conn.close()

    def cell(name, size):
        median = statistics.median(times[name])
        return ("ok", rows / median, size / 1e6 / median)
    # PostgreSQL's rows counted in Creek's Arrow bytes (DuckDB's if Creek exported nothing).
    creek_bytes = nbytes.get("single") or nbytes.get("multi") or nbytes["DuckDB"]
    peers = {"PostgreSQL": cell("PostgreSQL", creek_bytes),
             "DuckDB": cell("DuckDB", nbytes["DuckDB"])}
    results = []
    for mode, label in (("single", "single endpoint (coordinator)"),
                        ("multi", "multi-endpoint (data nodes in parallel)")):
        why = endpoints_unexpected(probes[mode], mode == "single")
        if mode in failed:
            creek_cell = failed[mode]
        elif why:
            creek_cell = ("WRONG", why)
            print(f"Flight {mode}-endpoint export measured {cell(mode, nbytes[mode])} but {why}",
                  file=sys.stderr, flush=True)
        else:
            creek_cell = cell(mode, nbytes[mode])
        results.append((f"export: `{EXPORT_SQL}` over Flight SQL, {label}; "
                        f"{describe(probes[mode])}", {"Creek": creek_cell, **peers}))
    return results


# ---------------------------------------------------------------------------------------
# Ingest


def ingest(args, rows, creek, clients, pg_copy_rate, timed, query_failed):
    """The hits rows, as DuckDB exports them to Arrow, into a new Creek table through ADBC
    bulk ingest; returns the report row {engine: cell}."""
    import adbc_driver_manager

    creek_c, duck = clients["Creek"], clients["DuckDB"]
    source = duck.conn.sql(EXPORT_SQL).to_arrow_table()
    # Lower-case names, as `hits` has them in Creek and PostgreSQL: the created table is then
    # queried without quoting.
    source = source.rename_columns([name.lower() for name in source.column_names])
    batch_rows = max(1_000, INGEST_BATCH_BYTES * rows // max(source.nbytes, 1))
    source = pa.Table.from_batches(source.to_batches(max_chunksize=batch_rows), source.schema)
    row = {"PostgreSQL": ("ok", pg_copy_rate)}
    try:
        conn = connect(creek.flight_port, args.timeout)
    except adbc_driver_manager.Error as e:
        row["Creek"] = ("FAILED", f"connect: {one_line(e)}")
    else:
        def load():
            with conn.cursor() as cur:
                written = cur.adbc_ingest("hits_flight", source, mode="create")
            # Counted once visible, as the COPY rows are.
            creek_c.query("REFRESH TABLE hits_flight", LONG_CALL_SECONDS)
            return written
        try:
            seconds, written = timed(load)
            count = creek_c.query("SELECT count(*) FROM hits_flight", args.timeout)[0][0]
            if count != rows or written not in (rows, -1):
                row["Creek"] = ("WRONG", f"adbc_ingest reported {written} rows, the table "
                                         f"counts {count}, expected {rows}")
            else:
                row["Creek"] = ("ok", rows / seconds)
        except (adbc_driver_manager.Error, query_failed) as e:
            row["Creek"] = ("FAILED", one_line(e))
        finally:
            conn.close()
            try:
                creek_c.query("DROP TABLE IF EXISTS hits_flight", args.timeout)
            except query_failed:
                pass
    # DuckDB's in-process import of the same Arrow table, for scale: no wire at all.
    duck.conn.register("hits_arrow_source", source)
    seconds, _ = timed(lambda: duck.conn.execute(
        "CREATE TABLE hits_arrow AS SELECT * FROM hits_arrow_source"))
    count = duck.conn.execute("SELECT count(*) FROM hits_arrow").fetchone()[0]
    duck.conn.execute("DROP TABLE hits_arrow")
    duck.conn.unregister("hits_arrow_source")
    if count != rows:
        raise SystemExit(f"DuckDB holds {count} rows after importing the Arrow table, not {rows}")
    row["DuckDB"] = ("ok", rows / seconds)
    return (f"ingest: ADBC bulk ingest, Flight SQL CommandStatementIngest into a new table, "
            f"batches of {batch_rows:,} rows, rows/s (PostgreSQL: COPY CSV FROM STDIN above; "
            f"DuckDB: CREATE TABLE AS from the Arrow table in-process)", row)


def run(args, rows, creek, clients, pg_copy_rate, timed, query_failed):
    """Returns the report rows (name, {engine: cell}, unit): the two exports and the ingest."""
    results = [(name, row, "export") for name, row in export(args, rows, creek, clients, timed)]
    name, row = ingest(args, rows, creek, clients, pg_copy_rate, timed, query_failed)
    results.append((name, row, "rate"))
    for name, row, unit in results:
        print(f"{name}: " + ", ".join(f"{k} {v[1]:,.0f} rows/s" if v[0] == "ok" else f"{k} {v[0]}"
                                      for k, v in row.items()), file=sys.stderr, flush=True)
    return results
