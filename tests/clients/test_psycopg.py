"""psycopg 3 against creek dev: simple and extended protocol, text and binary results."""
import datetime
import decimal

import psycopg
import pytest
from psycopg import errors


@pytest.fixture()
def conn(creek):
    with psycopg.connect(creek.dsn, autocommit=True) as connection:
        yield connection


def test_roundtrip_extended_and_binary(conn):
    conn.execute("DROP TABLE IF EXISTS pg_people")
    conn.execute(
        "CREATE TABLE pg_people (id BIGINT PRIMARY KEY, name TEXT, score DOUBLE PRECISION, "
        "active BOOLEAN, born DATE, seen TIMESTAMP, price NUMERIC(10,2), tags TEXT[])")
    rows = [
        (1, "ann", 1.5, True, datetime.date(1990, 1, 2), datetime.datetime(2024, 5, 6, 7, 8, 9), decimal.Decimal("9.99"), ["a", "b"]),
        (2, "bob", None, False, None, None, None, None),
    ]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO pg_people VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows)
    conn.execute("REFRESH TABLE pg_people")
    for binary in (False, True):
        with conn.cursor(binary=binary) as cur:
            cur.execute("SELECT id, name, score, active, born, seen FROM pg_people WHERE id = %s", (1,))
            assert cur.fetchone() == (1, "ann", 1.5, True, datetime.date(1990, 1, 2), datetime.datetime(2024, 5, 6, 7, 8, 9))
    row = conn.execute("SELECT price, tags FROM pg_people WHERE id = 1").fetchone()
    assert row == (decimal.Decimal("9.99"), ["a", "b"])
    assert conn.execute("SELECT count(*) FROM pg_people WHERE score IS NULL").fetchone() == (1,)


def test_simple_protocol_multiple_statements(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT 1; SELECT 2", prepare=False)
        assert cur.fetchone() == (2,) or cur.fetchone() is None


def test_errors_have_sqlstate_and_connection_survives(conn):
    with pytest.raises(errors.UndefinedTable):
        conn.execute("SELECT * FROM does_not_exist")
    with pytest.raises(errors.SyntaxError):
        conn.execute("SELEC 1")
    with pytest.raises(errors.DivisionByZero):
        conn.execute("SELECT 1 / 0")
    with pytest.raises(errors.InvalidTextRepresentation):
        conn.execute("SELECT CAST('x' AS INTEGER)")
    assert conn.execute("SELECT 42").fetchone() == (42,)


def test_a_prepared_query_is_planned_again_after_ddl_and_setting_changes(conn):
    # Not a key lookup, so Execute runs the plan made at Parse while it is still valid.
    query = "SELECT id, v FROM pg_prep WHERE v = %s ORDER BY id"
    conn.execute("CREATE TABLE pg_prep (id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("INSERT INTO pg_prep VALUES (1, 'a'), (2, 'b')")
    for _ in range(3):
        assert conn.execute(query, ("a",), prepare=True).fetchall() == [(1, "a")]
    conn.execute("DROP TABLE pg_prep")
    conn.execute("CREATE TABLE pg_prep (id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("INSERT INTO pg_prep VALUES (3, 'a')")
    assert conn.execute(query, ("a",), prepare=True).fetchall() == [(3, "a")]
    conn.execute("CREATE TABLE pg_prep_other.pg_prep (id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("INSERT INTO pg_prep_other.pg_prep VALUES (4, 'a')")
    conn.execute("SET search_path TO pg_prep_other")
    try:
        assert conn.execute(query, ("a",), prepare=True).fetchall() == [(4, "a")]
    finally:
        conn.execute("SET search_path TO doc")
    assert conn.execute(query, ("a",), prepare=True).fetchall() == [(3, "a")]


def test_duplicate_key(conn):
    conn.execute("CREATE TABLE IF NOT EXISTS pg_dup (id INTEGER PRIMARY KEY)")
    conn.execute("INSERT INTO pg_dup VALUES (1) ON CONFLICT (id) DO NOTHING")
    with pytest.raises(errors.UniqueViolation):
        conn.execute("INSERT INTO pg_dup VALUES (1)")


def test_copy_from_stdin_text_and_csv(conn):
    conn.execute("CREATE TABLE pg_copy (id INTEGER PRIMARY KEY, name TEXT, score DOUBLE PRECISION)")
    with conn.cursor() as cur:
        with cur.copy("COPY pg_copy (id, name, score) FROM STDIN") as copy:
            for i in range(2500):
                copy.write_row((i, f"name {i}", i / 2 if i % 10 else None))
        assert cur.rowcount == 2500
        with cur.copy("COPY pg_copy FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
            copy.write('id,name,score\n10000,"quoted, with comma",1.5\n10001,,\n')
    conn.execute("REFRESH TABLE pg_copy")
    assert conn.execute("SELECT count(*), count(score) FROM pg_copy").fetchone() == (2502, 2251)
    assert conn.execute("SELECT name FROM pg_copy WHERE id = 10000").fetchone() == ("quoted, with comma",)
    assert conn.execute("SELECT name FROM pg_copy WHERE id = 10001").fetchone() == (None,)


def test_copy_errors_are_reported_and_connection_survives(conn):
    conn.execute("CREATE TABLE IF NOT EXISTS pg_copy_err (id INTEGER PRIMARY KEY, n INTEGER)")
    with pytest.raises(errors.InvalidTextRepresentation):
        with conn.cursor().copy("COPY pg_copy_err FROM STDIN") as copy:
            copy.write("1\tnot a number\n")
    with pytest.raises(errors.UniqueViolation):
        with conn.cursor().copy("COPY pg_copy_err FROM STDIN") as copy:
            copy.write("5\t1\n5\t2\n")
    with pytest.raises(errors.UndefinedTable):
        with conn.cursor().copy("COPY no_such_table FROM STDIN") as copy:
            copy.write("1\n")
    assert conn.execute("SELECT 1").fetchone() == (1,)


def test_copy_refuses_malformed_records_and_unbounded_ones(conn):
    conn.execute("CREATE TABLE IF NOT EXISTS pg_copy_bad (id INTEGER PRIMARY KEY, a TEXT, b TEXT)")
    with pytest.raises(errors.BadCopyFileFormat, match='missing data for column "b"'):
        with conn.cursor().copy("COPY pg_copy_bad FROM STDIN") as copy:
            copy.write("1\tx\n")
    with pytest.raises(errors.BadCopyFileFormat, match="extra data after last expected column"):
        with conn.cursor().copy("COPY pg_copy_bad FROM STDIN WITH (FORMAT csv)") as copy:
            copy.write("1,x,y," + "z," * 100_000 + "\n")
    with pytest.raises(errors.BadCopyFileFormat, match="unterminated CSV quoted field"):
        with conn.cursor().copy("COPY pg_copy_bad FROM STDIN WITH (FORMAT csv)") as copy:
            copy.write('9,x,y\n10,"never closed,z\n')
    # A quoted field that never ends fails the COPY once it passes 64 MiB; it is not buffered
    # (and rescanned) for as long as the client sends.
    with pytest.raises(errors.ProgramLimitExceeded, match="longer than 64 MiB"):
        with conn.cursor().copy("COPY pg_copy_bad FROM STDIN WITH (FORMAT csv)") as copy:
            copy.write('1,"')
            chunk = "x\n" * (1 << 19)
            for _ in range(80):
                copy.write(chunk)
    # Option characters are single bytes, and CSV's delimiter and quote differ.
    with pytest.raises(errors.SyntaxError):
        conn.execute("COPY pg_copy_bad FROM STDIN WITH (FORMAT csv, QUOTE '\u00e9')")
    with pytest.raises(errors.InvalidParameterValue, match="delimiter and quote must be different"):
        conn.execute("COPY pg_copy_bad FROM STDIN WITH (FORMAT csv, QUOTE ',')")
    # Quoted CSV fields that span lines, an escape other than the quote (records split across
    # CopyData messages anywhere are covered by the loader's unit tests).
    with conn.cursor().copy("COPY pg_copy_bad FROM STDIN WITH (FORMAT csv, ESCAPE '\\')") as copy:
        for piece in ('2,"line\nbreak \\', '"q\\', '"", x\n3,"", \n'):
            copy.write(piece)
    assert conn.execute("SELECT id, a, b FROM pg_copy_bad ORDER BY id").fetchall() == [
        (2, 'line\nbreak "q"', " x"), (3, "", " ")]
    assert conn.execute("SELECT 1").fetchone() == (1,)


def test_copy_of_many_batches_is_counted_and_a_duplicate_fails_it(conn):
    # Batches of 10,000 rows are written while the next ones arrive: the count must cover
    # every batch, the rows be visible to this session at once, and a duplicate in an early
    # batch still fail the COPY.
    conn.execute("CREATE TABLE pg_copy_big (id INTEGER PRIMARY KEY, v TEXT)")
    with conn.cursor() as cur:
        with cur.copy("COPY pg_copy_big FROM STDIN") as copy:
            for i in range(25_000):
                copy.write_row((i, f"v{i}"))
        assert cur.rowcount == 25_000
    assert conn.execute("SELECT count(*), max(id) FROM pg_copy_big").fetchone() == (25_000, 24_999)
    with pytest.raises(errors.UniqueViolation) as failed:
        with conn.cursor().copy("COPY pg_copy_big FROM STDIN") as copy:
            copy.write_row((5, "again"))
            for i in range(30_000, 55_000):
                copy.write_row((i, f"v{i}"))
    assert "pg_copy_big_pkey" in str(failed.value)
    assert conn.execute("SELECT v FROM pg_copy_big WHERE id = 5").fetchone() == ("v5",)


def test_explain_shows_pushed_filters(conn):
    conn.execute("CREATE TABLE IF NOT EXISTS pg_explain (id INTEGER PRIMARY KEY, v TEXT)")
    plan = "\n".join(r[1] for r in conn.execute("EXPLAIN SELECT v FROM pg_explain WHERE id = 3 AND v = 'x'"))
    assert "ShardScanExec" in plan
    assert "pushed_filters" in plan
    assert "primary_key_lookup" in plan


def test_transactions_are_accepted(conn):
    conn.autocommit = False
    conn.execute("SELECT 1")
    conn.commit()
    conn.execute("SELECT 1")
    conn.rollback()


def test_show_create_table(conn):
    conn.execute("CREATE TABLE IF NOT EXISTS pg_show (id INTEGER PRIMARY KEY, kind VARCHAR(10)) CLUSTERED BY (id) INTO 3 SHARDS")
    text = conn.execute("SHOW CREATE TABLE pg_show").fetchone()[0]
    assert 'CLUSTERED BY ("id") INTO 3 SHARDS' in text
    assert '"kind" VARCHAR(10)' in text


def test_prepared_statements_and_deallocate_all(creek):
    """psycopg prepares a query on the server after repeated use; DEALLOCATE ALL drops them."""
    with psycopg.connect(creek.dsn, prepare_threshold=1) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS prep_t (id INTEGER PRIMARY KEY, v TEXT)")
        for i in range(3):
            assert conn.execute("SELECT %s::int + 1", [i]).fetchone() == (i + 1,)
        assert conn.prepared_max is None or conn.prepared_max > 0
        conn.execute("DEALLOCATE ALL")
        # Statements prepared again after DEALLOCATE ALL work as before.
        for i in range(3):
            assert conn.execute("SELECT %s::int + 1", [i]).fetchone() == (i + 1,)
        with pytest.raises(psycopg.errors.SyntaxError):
            conn.execute("SELEC 1")
        assert conn.execute("SELECT 2").fetchone() == (2,)


def test_cancel_stops_a_running_query(creek):
    """A CancelRequest ends a long query with 57014; the connection keeps working."""
    import threading
    import time

    with psycopg.connect(creek.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS cancel_t (id INTEGER PRIMARY KEY)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO cancel_t VALUES (%s)", [(i,) for i in range(2000)])
        conn.execute("REFRESH TABLE cancel_t")
        timer = threading.Timer(1.0, conn.cancel_safe)
        timer.start()
        started = time.monotonic()
        # 8 * 10^9 joined rows: hours of work unless the cancel stops it.
        with pytest.raises(errors.QueryCanceled):
            conn.execute("SELECT count(*) FROM cancel_t a, cancel_t b, cancel_t c")
        timer.join()
        assert time.monotonic() - started < 30
        assert conn.execute("SELECT count(*) FROM cancel_t").fetchone() == (2000,)


def test_explain_shows_work_on_data_nodes(conn):
    """Partial aggregates, filters and per-shard top-N run next to the shards."""
    conn.execute("CREATE TABLE IF NOT EXISTS explain_t (id INTEGER PRIMARY KEY, g TEXT, v INTEGER) "
                  "CLUSTERED INTO 3 SHARDS")
    plan = "\n".join(r[1] for r in conn.execute(
        "EXPLAIN SELECT g, count(*), sum(v) FROM explain_t WHERE v > 1 GROUP BY g").fetchall())
    assert "on_data_nodes=[AggregateExec: mode=Partial" in plan
    assert "FilterExec: v@1 > 1" in plan
    assert "mode=FinalPartitioned" in plan
    plan = "\n".join(r[1] for r in conn.execute(
        "EXPLAIN SELECT id FROM explain_t ORDER BY v DESC LIMIT 5").fetchall())
    assert "on_data_nodes=[SortExec: TopK(fetch=5)" in plan
    # The coordinator merges the nodes' top rows (one data node here: a sort over one stream).
    assert "SortPreservingMergeExec" in plan or "SortExec: TopK(fetch=5)" in plan.split("ShardScanExec")[0]
    plan = "\n".join(r[1] for r in conn.execute(
        "EXPLAIN SELECT id FROM explain_t WHERE g LIKE 'ab%'").fetchall())
    assert "pushed_filters=[g LIKE Utf8(\"ab%\")]" in plan


def test_startup_parameters(creek):
    """ParameterStatus carries Creek's values; start-up options set session settings."""
    with psycopg.connect(creek.dsn + " options=-csearch_path=startup_schema") as conn:
        assert conn.info.parameter_status("server_version") == "15.0"
        assert conn.info.parameter_status("search_path") == "startup_schema"
        assert conn.info.parameter_status("client_encoding") == "UTF8"
        assert conn.execute("SHOW search_path").fetchone() == ("startup_schema",)


def test_wide_multi_row_insert_with_parameters(conn):
    # One statement, 400 rows x 6 columns = 2,400 parameters; psycopg types each int parameter
    # by its value (int2, int4, int8), so one column gets several integer types.
    conn.execute("CREATE TABLE pg_wide (id BIGINT PRIMARY KEY, small SMALLINT, big BIGINT, "
                 "x DOUBLE PRECISION, ts TIMESTAMP, note TEXT)")
    base = datetime.datetime(2024, 1, 1)
    rows = [(i, i % 100 - 50, i * 10_000_000_000 if i % 2 else i, i / 4 if i % 3 else i,
             base + datetime.timedelta(seconds=i), None if i % 5 == 0 else f"n{i}")
            for i in range(400)]
    values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(rows))
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO pg_wide VALUES {values}", [v for r in rows for v in r])
        assert cur.rowcount == 400
    conn.execute("REFRESH TABLE pg_wide")
    got = conn.execute("SELECT id, small, big, x, ts, note FROM pg_wide ORDER BY id").fetchall()
    assert got == [(i, s, b, float(x), ts, n) for i, s, b, x, ts, n in rows]
    # A value that does not fit its column fails the statement with PostgreSQL's SQLSTATE.
    with pytest.raises(errors.NumericValueOutOfRange):
        conn.execute("INSERT INTO pg_wide (id, small) VALUES (%s, %s), (%s, %s)",
                     [1000, 1, 1001, 70000])


def test_client_side_binding_sends_array_literals(creek):
    """psycopg's ClientCursor binds a list as the PostgreSQL literal '{a,b}', which must be read
    as an array, quoting, escapes and NULLs included."""
    with psycopg.connect(creek.dsn, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
        conn.execute("CREATE TABLE pg_client_arr (id INT PRIMARY KEY, tags TEXT[], nums BIGINT[])")
        tags = ["a", "b c", 'quote"d', "back\\slash", "comma,", None, "NULL", ""]
        conn.execute("INSERT INTO pg_client_arr (id, tags, nums) VALUES (%s, %s, %s)", (1, tags, [1, None, 3]))
        conn.execute("INSERT INTO pg_client_arr (id, tags) VALUES (2, '{x,\"y z\"}')")
        conn.execute("REFRESH TABLE pg_client_arr")
        rows = conn.execute("SELECT id, tags, nums FROM pg_client_arr ORDER BY id").fetchall()
        assert rows == [(1, tags, [1, None, 3]), (2, ["x", "y z"], None)]
        assert conn.execute("SELECT '{1,2,3}'::int[]").fetchone() == ([1, 2, 3],)
        assert conn.execute("SELECT cardinality('{{1,2},{3,4}}'::int[][])").fetchone() is not None
        try:
            conn.execute("SELECT '{1,2'::int[]")
            raise AssertionError("a malformed array literal was accepted")
        except psycopg.Error as error:
            assert error.sqlstate == "22P02", error


def test_concurrent_read_modify_writes_lose_nothing(creek):
    """`SET n = n + 1` and `ON CONFLICT DO UPDATE SET n = t.n + 1` from several clients at
    once: every increment counts (writes are conditional on the version they read)."""
    import threading

    with psycopg.connect(creek.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE occ_counter (id INT PRIMARY KEY, n BIGINT)")
        conn.execute("INSERT INTO occ_counter VALUES (1, 0)")
    errors = []

    def increment(statement, times):
        try:
            with psycopg.connect(creek.dsn, autocommit=True) as conn:
                for _ in range(times):
                    conn.execute(statement)
        except Exception as error:  # reported below
            errors.append(error)

    statements = [
        "UPDATE occ_counter SET n = n + 1 WHERE id = 1",
        "INSERT INTO occ_counter (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = occ_counter.n + 1",
    ]
    threads = [threading.Thread(target=increment, args=(statements[i % 2], 15)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    with psycopg.connect(creek.dsn, autocommit=True) as conn:
        assert conn.execute("SELECT n FROM occ_counter WHERE id = 1").fetchone() == (60,)
        # An upsert's WHERE decides whether the existing row is updated.
        conn.execute("INSERT INTO occ_counter VALUES (2, 5)")
        cur = conn.execute(
            "INSERT INTO occ_counter (id, n) VALUES (2, 3), (3, 7) "
            "ON CONFLICT (id) DO UPDATE SET n = excluded.n WHERE occ_counter.n < excluded.n")
        assert cur.rowcount == 1
        conn.execute("REFRESH TABLE occ_counter")
        rows = conn.execute("SELECT id, n FROM occ_counter ORDER BY id").fetchall()
        assert rows == [(1, 60), (2, 5), (3, 7)]
