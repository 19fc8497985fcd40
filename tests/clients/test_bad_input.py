"""Hostile and malformed input gets an error, never a crash or a hang, and other clients go on."""
import json
import socket
import struct
import time
import urllib.error
import urllib.request

import psycopg

from conftest import Creek


def startup(sock):
    params = b"user\0crate\0database\0doc\0\0"
    body = struct.pack("!i", 196608) + params
    sock.sendall(struct.pack("!i", len(body) + 4) + body)
    sock.settimeout(10)
    data = b""
    while b"Z\0\0\0\x05" not in data:
        chunk = sock.recv(65536)
        assert chunk, "server closed during startup"
        data += chunk


def test_message_claiming_one_gigabyte_is_rejected(creek):
    with socket.create_connection(("127.0.0.1", creek.pg_port)) as sock:
        startup(sock)
        sock.sendall(b"Q" + struct.pack("!i", 1 << 30) + b"SELECT 1")
        sock.settimeout(10)
        try:
            reply = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            reply = b""
        # Either an ErrorResponse or a closed connection; never an attempt to read 1 GB.
        assert reply == b"" or reply[:1] == b"E"
    with psycopg.connect(creek.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert creek.alive()


def test_invalid_utf8_query(creek):
    with socket.create_connection(("127.0.0.1", creek.pg_port)) as sock:
        startup(sock)
        query = b"SELECT '\xff\xfe'\0"
        sock.sendall(b"Q" + struct.pack("!i", len(query) + 4) + query)
        sock.settimeout(10)
        reply = sock.recv(65536)
        assert reply[:1] in (b"E", b"")
    assert creek.alive()


def test_deeply_nested_expression(creek):
    with psycopg.connect(creek.dsn, autocommit=True) as conn:
        try:
            conn.execute("SELECT " + "(" * 10000 + "1" + ")" * 10000)
            raise AssertionError("10,000 nested parentheses should be rejected")
        except psycopg.Error as error:
            assert error.sqlstate in ("54000", "54001", "42601")
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert creek.alive()


def test_long_operator_chains_are_refused_not_fatal(creek):
    """`1+1+...` with 100,000 terms (and long OR, UNION and cast chains) once overflowed a
    thread's stack and killed the process; they are refused with 54000, over pgwire, HTTP
    and Flight SQL, and a chain within the bound still runs."""
    import adbc_driver_flightsql.dbapi as flight_sql
    import adbc_driver_manager
    from conftest import post_sql

    chains = ["SELECT " + "+".join(["1"] * 100_000),
              "SELECT 1 WHERE " + " OR ".join(["1 = 1"] * 5_000),
              "SELECT " + " UNION SELECT ".join(["1"] * 5_000),
              "SELECT 1" + "::int" * 5_000,
              "SELECT " + "ARRAY[" * 1_000 + "1" + "]" * 1_000]
    with psycopg.connect(creek.dsn, autocommit=True) as conn:
        for sql in chains:
            try:
                conn.execute(sql)
                raise AssertionError(f"{sql[:40]}... should be refused")
            except psycopg.Error as error:
                assert error.sqlstate == "54000", error
        assert conn.execute("SELECT " + "+".join(["1"] * 1_999)).fetchone() == (1_999,)
    status, answer = post_sql(creek, {"stmt": chains[0]})
    assert status == 400 and "too complex" in answer["error"]["message"]
    with flight_sql.connect(creek.flight_uri, autocommit=True) as connection:
        cur = connection.cursor()
        try:
            cur.execute(chains[1])
            raise AssertionError("Flight SQL should refuse the chain")
        except adbc_driver_manager.Error as error:
            assert (b"x-sqlstate", b"54000") in error.details
        cur.close()
    assert_second_client_served(creek)


def read_until_ready(sock):
    """Reads backend messages until ReadyForQuery; returns them as (type, body) pairs."""
    sock.settimeout(20)
    data = b""
    messages = []
    while True:
        while len(data) >= 5:
            kind = data[:1]
            length = struct.unpack("!i", data[1:5])[0]
            if len(data) < 1 + length:
                break
            messages.append((kind, data[5:1 + length]))
            data = data[1 + length:]
            if kind == b"Z":
                return messages
        chunk = sock.recv(65536)
        assert chunk, f"server closed the connection; got {messages}"
        data += chunk


def sqlstate(body):
    """The SQLSTATE field of an ErrorResponse body."""
    for field in body.split(b"\0"):
        if field[:1] == b"C":
            return field[1:].decode()
    return None


def parse_message(query):
    body = b"\0" + query.encode() + b"\0" + struct.pack("!h", 0)
    return b"P" + struct.pack("!i", len(body) + 4) + body


SYNC = b"S" + struct.pack("!i", 4)


def assert_second_client_served(creek):
    assert creek.alive(), "creek dev died"
    with psycopg.connect(creek.dsn, autocommit=True) as conn:
        assert conn.execute("SELECT 41 + 1").fetchone() == (42,)


def test_parse_with_absurd_parameter_numbers_is_refused(creek):
    """A Parse of `SELECT $4000000000` used to size a parameter list by the number and abort
    the process on a 96 GB allocation."""
    for query in ["SELECT $4000000000", "SELECT $18446744073709551615",
                  "SELECT $99999999999999999999999", "SELECT $0", "SELECT $65536"]:
        with socket.create_connection(("127.0.0.1", creek.pg_port)) as sock:
            startup(sock)
            sock.sendall(parse_message(query) + SYNC)
            messages = read_until_ready(sock)
            errors = [body for kind, body in messages if kind == b"E"]
            assert errors and sqlstate(errors[0]) == "42P02", (query, messages)
        assert_second_client_served(creek)
    with psycopg.connect(creek.dsn, autocommit=True) as conn:
        # Ordinary parameters are untouched by the limit.
        assert conn.execute("SELECT %s::int + 1", (1,)).fetchone() == (2,)


def test_invalid_numeric_and_varchar_types_are_refused(creek):
    with psycopg.connect(creek.dsn, autocommit=True) as conn:
        for ddl in ["CREATE TABLE bad_num1 (x numeric(5,10))",
                    "CREATE TABLE bad_num2 (x numeric(266))",
                    "CREATE TABLE bad_num3 (x numeric(0))",
                    "CREATE TABLE bad_num4 (x numeric(39, 2))",
                    "CREATE TABLE bad_vc (x varchar(0))",
                    "CREATE TABLE bad_vc2 (x varchar(4294967297))",
                    "CREATE TABLE bad_float (x float(54))",
                    "CREATE TABLE bad_shards (x int) CLUSTERED INTO 0 SHARDS"]:
            try:
                conn.execute(ddl)
                raise AssertionError(f"{ddl} was accepted")
            except psycopg.Error as error:
                assert error.sqlstate in ("22023", "42601"), (ddl, error.sqlstate, str(error))
        conn.execute("CREATE TABLE good_num (id int PRIMARY KEY, x numeric(5,2))")
        conn.execute("INSERT INTO good_num VALUES (1, 123.45)")
        conn.execute("REFRESH TABLE good_num")
        assert str(conn.execute("SELECT x FROM good_num").fetchone()[0]) == "123.45"
    assert_second_client_served(creek)


def test_integer_overflows_are_errors(creek):
    with psycopg.connect(creek.dsn, autocommit=True) as conn:
        try:
            conn.execute("SELECT CAST(2147483000 AS DATE)").fetchall()
            raise AssertionError("a date 5.8 million years away was answered")
        except psycopg.Error as error:
            assert error.sqlstate == "22008", error
        for setting in ["'9223372036854775807h'", "'99999999999999999999s'"]:
            try:
                conn.execute(f"CREATE TABLE bad_refresh (x int) WITH (refresh_interval = {setting})")
                raise AssertionError(f"refresh_interval {setting} was accepted")
            except psycopg.Error as error:
                assert error.sqlstate == "22023", error
    assert_second_client_served(creek)


def test_nested_in_subqueries_stay_bounded(creek):
    """Each `IN (subquery)` in a select list is rewritten with copies of its subquery, and
    DataFusion plans nested queries in time exponential in their depth: twenty nested INs must
    be answered or refused at once, not hold a core for minutes."""
    query = "SELECT true"
    for _ in range(20):
        query = f"SELECT true IN ({query})"
    started = time.monotonic()
    with psycopg.connect(creek.dsn, autocommit=True) as conn:
        try:
            assert conn.execute(query).fetchall() == [(True,)]
        except psycopg.Error as error:
            # Too deep: refused rather than planned for minutes.
            assert error.sqlstate in ("0A000", "54001", "54000"), error
        assert time.monotonic() - started < 30
        # Eight levels, the depth real queries stay well within, are answered.
        shallow = "SELECT true"
        for _ in range(7):
            shallow = f"SELECT true IN ({shallow})"
        assert conn.execute(shallow).fetchall() == [(True,)]
    assert_second_client_served(creek)


def test_over_long_text_is_refused_not_cut(creek):
    """A shard keeps at most 65,530 bytes of one text value (tantivy cuts dictionary entries at
    64 KiB and drops longer index terms without an error). Longer keys and values were once
    accepted: the value read back cut to 65,535 bytes, `=` found nothing, DELETE deleted
    nothing. They are refused with 54000 now, and values up to the limit round-trip whole."""
    long = "x" * 70000
    most = "y" * 65530
    with psycopg.connect(creek.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE long_keys (k TEXT PRIMARY KEY, v TEXT, a TEXT[])")
        for sql, args in [
            ("INSERT INTO long_keys (k) VALUES (%s)", (long,)),
            ("INSERT INTO long_keys (k, v) VALUES ('a', %s)", (long,)),
            ("INSERT INTO long_keys (k, a) VALUES ('b', %s)", ([long],)),
        ]:
            try:
                conn.execute(sql, args)
                raise AssertionError(f"{sql} with 70,000 bytes should be refused")
            except psycopg.Error as error:
                assert error.sqlstate == "54000", error
                assert "65530" in str(error)
        conn.execute("INSERT INTO long_keys (k, v) VALUES (%s, %s)", (most, most))
        conn.execute("REFRESH TABLE long_keys")
        assert conn.execute("SELECT length(v) FROM long_keys WHERE k = %s", (most,)).fetchone() == (65530,)
        assert conn.execute("SELECT count(*) FROM long_keys WHERE v = %s", (most,)).fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM long_keys WHERE v IN (%s, 'z')", (most,)).fetchone() == (1,)
        # A longer literal equals no stored value; it is answered without asking the index.
        assert conn.execute("SELECT count(*) FROM long_keys WHERE v = %s", (long,)).fetchone() == (0,)
        assert conn.execute("DELETE FROM long_keys WHERE k = %s", (most,)).rowcount == 1
        conn.execute("DROP TABLE long_keys")
    assert creek.alive()


def test_rollback_after_writes_warns(creek):
    """Writes are applied when they run; ROLLBACK says so instead of pretending it undid them."""
    notices = []
    with psycopg.connect(creek.dsn) as conn:
        conn.add_notice_handler(lambda n: notices.append((n.severity, n.sqlstate, n.message_primary)))
        conn.execute("CREATE TABLE rolled (id INT PRIMARY KEY)")
        conn.commit()
        conn.execute("SELECT 1")
        conn.rollback()
        assert notices == []
        conn.execute("INSERT INTO rolled VALUES (1)")
        conn.rollback()
        assert len(notices) == 1
        assert notices[0][:2] == ("WARNING", "0A000")
        assert "did not undo" in notices[0][2]
        conn.autocommit = True
        conn.execute("ROLLBACK")
        assert notices[-1][:2] == ("WARNING", "25P01")
        assert conn.execute("SELECT count(*) FROM rolled").fetchone() == (1,)
        conn.execute("DROP TABLE rolled")


def test_json_nested_100000_deep_is_an_error(creek):
    deep_object = '{"a":' * 100000 + "1" + "}" * 100000
    deep_array = "[" * 100000 + "]" * 100000
    with psycopg.connect(creek.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE deep_json (id INT PRIMARY KEY, o OBJECT)")
        try:
            conn.execute("INSERT INTO deep_json (id, o) VALUES (1, %s)", (deep_object,))
            raise AssertionError("an object nested 100,000 deep should be refused")
        except psycopg.Error as error:
            assert error.sqlstate == "22P02", error
        conn.execute("DROP TABLE deep_json")
    body = ('{"stmt": "SELECT ?", "args": ' + deep_array + "}").encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{creek.http_port}/_sql",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("a body nested 100,000 deep should be refused")
    except urllib.error.HTTPError as error:
        assert error.code == 400
        assert "error" in json.loads(error.read())
    assert_second_client_served(creek)
    assert creek.alive()


def test_statement_timeout_cancels_and_the_session_goes_on(creek):
    slow = "SELECT count(*) FROM generate_series(1, 100000000) a, generate_series(1, 100) b"
    with psycopg.connect(creek.dsn, autocommit=True) as conn:
        conn.execute("SET statement_timeout = '300ms'")
        assert conn.execute("SHOW statement_timeout").fetchone() == ("300ms",)
        started = time.monotonic()
        try:
            conn.execute(slow).fetchall()
            raise AssertionError("the statement should time out")
        except psycopg.errors.QueryCanceled as error:
            assert "statement timeout" in str(error)
        assert time.monotonic() - started < 5
        # The same limit through the extended protocol (a prepared statement with parameters).
        try:
            conn.execute(slow + " WHERE a.value > %s", (0,), prepare=True).fetchall()
            raise AssertionError("the prepared statement should time out")
        except psycopg.errors.QueryCanceled:
            pass
        assert conn.execute("SELECT 1").fetchone() == (1,)
        for bad in ["'soon'", "'-1'", "'1 fortnight'"]:
            try:
                conn.execute(f"SET statement_timeout = {bad}")
                raise AssertionError(f"statement_timeout = {bad} should be refused")
            except psycopg.Error as error:
                assert error.sqlstate == "22023"
        conn.execute("SET statement_timeout = 0")
        assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)
    with psycopg.connect(creek.dsn + " options='-c statement_timeout=200'", autocommit=True) as conn:
        try:
            conn.execute(slow).fetchall()
            raise AssertionError("a timeout given at connection start should apply")
        except psycopg.errors.QueryCanceled:
            pass
    assert creek.alive()


def test_connections_past_max_connections_are_refused():
    server = Creek()
    server.extra_args = ["--max-connections", "3"]
    server.start()
    try:
        held = [psycopg.connect(server.dsn, autocommit=True) for _ in range(3)]
        for sslmode in ("disable", "prefer"):
            started = time.monotonic()
            try:
                psycopg.connect(server.dsn + f" sslmode={sslmode}", connect_timeout=5)
                raise AssertionError("a fourth connection should be refused")
            except psycopg.OperationalError as error:
                assert "too many clients" in str(error), error
            assert time.monotonic() - started < 5
        # A cancel request still gets through at the limit.
        import threading

        outcome = []

        def slow():
            try:
                held[0].execute("SELECT count(*) FROM generate_series(1, 100000000) a, "
                                "generate_series(1, 100) b").fetchall()
                outcome.append("finished")
            except psycopg.errors.QueryCanceled:
                outcome.append("57014")

        thread = threading.Thread(target=slow)
        thread.start()
        time.sleep(0.5)
        held[0].cancel()
        thread.join(10)
        assert outcome == ["57014"]
        # HTTP has its own cap: three kept-alive connections hold it, a fourth gets 503.
        request = (b"POST /_sql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 19\r\n\r\n{\"stmt\":\"select 1\"}")
        kept = []
        for _ in range(3):
            sock = socket.create_connection(("127.0.0.1", server.http_port))
            sock.settimeout(5)
            sock.sendall(request)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            kept.append(sock)
        with socket.create_connection(("127.0.0.1", server.http_port)) as extra:
            extra.settimeout(5)
            extra.sendall(request)
            answer = extra.recv(65536)
            assert answer.startswith(b"HTTP/1.1 503"), answer
            assert b'"error"' in answer
        for sock in kept:
            sock.close()
        # The held connections keep working; a freed slot takes a new client.
        for conn in held:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        held.pop().close()
        deadline = time.monotonic() + 5
        while True:
            try:
                with psycopg.connect(server.dsn) as conn:
                    assert conn.execute("SELECT 2").fetchone() == (2,)
                break
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, "the freed slot was not given back"
                time.sleep(0.1)
        for conn in held:
            conn.close()
        assert server.alive()
    finally:
        server.stop()


def test_kill_ends_a_running_statement_and_spares_the_rest(creek):
    """KILL '<job id>' (from sys.jobs) and KILL ALL end running statements with 57014; the
    killed sessions go on, and the killing statement survives its own KILL ALL."""
    import threading

    slow = "SELECT count(*) FROM generate_series(1, 100000000) a, generate_series(1, 100) b"
    outcomes = {}

    def run(name):
        with psycopg.connect(creek.dsn, autocommit=True) as conn:
            try:
                conn.execute(slow).fetchall()
                outcomes[name] = "finished"
            except psycopg.Error as error:
                outcomes[name] = error.sqlstate
            outcomes[name + " after"] = conn.execute("SELECT 1").fetchone()

    def running():
        return conn.execute(
            "SELECT id FROM sys.jobs WHERE stmt LIKE 'SELECT count(*) FROM generate_series%'"
        ).fetchall()

    def wait_for(count):
        deadline = time.monotonic() + 10
        while len(running()) < count:
            assert time.monotonic() < deadline, "the slow statements did not show in sys.jobs"
            time.sleep(0.05)

    with psycopg.connect(creek.dsn, autocommit=True) as conn:
        one = threading.Thread(target=run, args=("one",))
        one.start()
        wait_for(1)
        [(job,)] = running()
        assert conn.execute(f"KILL '{job}'").statusmessage == "KILL 1"
        one.join(10)
        assert outcomes == {"one": "57014", "one after": (1,)}
        # The ended statement is in sys.jobs_log with why it ended.
        [(stmt, error, ordered)] = conn.execute(
            "SELECT stmt, error, ended >= started FROM sys.jobs_log WHERE id = %s", (job,)
        ).fetchall()
        assert stmt.startswith("SELECT count(*) FROM generate_series") and ordered
        assert "killed" in error
        conn.execute("SELECT 42")
        last = conn.execute(
            "SELECT stmt, error FROM sys.jobs_log WHERE stmt = 'SELECT 42'").fetchall()
        assert last == [("SELECT 42", None)]
        # Gone already, or no such job: nothing to kill.
        assert conn.execute(f"KILL '{job}'").statusmessage == "KILL 0"
        assert conn.execute("KILL 'not a job id'").statusmessage == "KILL 0"
        threads = [threading.Thread(target=run, args=(name,)) for name in ("two", "three")]
        for thread in threads:
            thread.start()
        wait_for(2)
        assert conn.execute("KILL ALL").statusmessage == "KILL 2"
        for thread in threads:
            thread.join(10)
        assert outcomes["two"] == outcomes["three"] == "57014"
        try:
            conn.execute("KILL")
            raise AssertionError("KILL without a job should be a syntax error")
        except psycopg.Error as error:
            assert error.sqlstate == "42601"
    assert creek.alive()


def test_a_query_past_its_memory_limit_fails_alone():
    server = Creek()
    server.extra_args = ["--query-memory-limit", "32mb", "--memory-limit", "48mb"]
    server.start()
    big_join = ("SELECT count(*) FROM generate_series(1, 3000000) a "
                "JOIN generate_series(1, 3000000) b ON a.value = b.value")
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            try:
                conn.execute(big_join).fetchall()
                raise AssertionError("a 3M-row hash join should not fit in 32 MiB")
            except psycopg.Error as error:
                assert error.sqlstate == "54000", error
                assert "--query-memory-limit" in str(error)
            # The memory came back: the same session and others run queries that fit.
            small = big_join.replace("3000000", "1000")
            assert conn.execute(small).fetchone() == (1000,)
        with psycopg.connect(server.dsn, autocommit=True) as other:
            assert other.execute("SELECT 1").fetchone() == (1,)
        assert server.alive()
    finally:
        server.stop()


def test_http_slow_loris_is_dropped(creek):
    """A client that trickles its request head never gets to hold a connection for ever."""
    with socket.create_connection(("127.0.0.1", creek.http_port)) as sock:
        sock.sendall(b"POST /_sql HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(1)
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 30:
            try:
                sock.sendall(b"X-Slow: 1\r\n")
                # Anything read (an error status or the end of the stream) means the server
                # has given up on the request.
                sock.recv(1024)
                closed = True
                break
            except socket.timeout:
                continue
            except OSError:
                closed = True
                break
        assert closed, "a trickled request head kept its connection for 30 s"
        assert time.monotonic() - started < 15
    assert_second_client_served(creek)


def test_http_stalled_body_is_answered_and_dropped(creek):
    """A client that sends its request head and then stops sending the body it announced gets
    408 after 10 s without body bytes, instead of holding its connection."""
    with socket.create_connection(("127.0.0.1", creek.http_port)) as sock:
        sock.sendall(b"POST /_sql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"stmt\":")
        sock.settimeout(20)
        started = time.monotonic()
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b'"error"' in answer
        assert time.monotonic() - started < 15
    assert_second_client_served(creek)
