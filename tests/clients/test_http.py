"""The CrateDB-compatible HTTP endpoint, with raw HTTP and the official `crate` client."""
import http.client
import json
import urllib.error
import urllib.request

from crate import client as crate_client

from conftest import post_sql


def post(creek, body, query=""):
    return post_sql(creek, body, query)


def test_root_reports_version(creek):
    with urllib.request.urlopen(creek.url + "/") as response:
        assert "number" in json.loads(response.read())["version"]


def test_args_bulk_args_and_types(creek):
    assert post(creek, {"stmt": "CREATE TABLE http_t (id INTEGER PRIMARY KEY, name TEXT, ts TIMESTAMP WITH TIME ZONE)"})[0] == 200
    status, body = post(creek, {"stmt": "INSERT INTO http_t VALUES (?, ?, ?)", "bulk_args": [[1, "a", "2024-01-01T00:00:01Z"], [1, "dup", None], [2, "b", None]]})
    assert status == 200
    assert [r["rowcount"] for r in body["results"]] == [1, -2, 1]
    # A row whose value cannot be cast fails alone; the others are written.
    status, body = post(creek, {"stmt": "INSERT INTO http_t (id, name) VALUES (?, ?)",
                                "bulk_args": [[10, "x"], ["not a number", "y"], [11, "z"]]})
    assert status == 200
    assert [r["rowcount"] for r in body["results"]] == [1, -2, 1]
    status, body = post(creek, {"stmt": "INSERT INTO http_t (id, name) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
                                "bulk_args": [[10, "again"], [12, "new"]]})
    assert [r["rowcount"] for r in body["results"]] == [0, 1]
    assert post(creek, {"stmt": "REFRESH TABLE http_t"})[0] == 200
    status, body = post(creek, {"stmt": "SELECT count(*) FROM http_t WHERE id >= 10"})
    assert body["rows"] == [[3]]
    status, body = post(creek, {"stmt": "SELECT id, name, ts FROM http_t WHERE id = $1", "args": [1]}, "?types")
    assert status == 200
    assert body["cols"] == ["id", "name", "ts"]
    assert body["rows"] == [[1, "a", 1704067201000]]
    assert body["rowcount"] == 1
    assert len(body["col_types"]) == 3


def test_errors(creek):
    status, body = post(creek, {"stmt": "SELECT * FROM missing"})
    assert status == 404 and body["error"]["code"] == 4041
    status, body = post(creek, {"stmt": "SELEC 1"})
    assert status == 400 and body["error"]["code"] == 4000
    status, body = post(creek, b"{not json")
    assert status == 400 and "error" in body
    post(creek, {"stmt": "CREATE TABLE IF NOT EXISTS http_dup (id INTEGER PRIMARY KEY)"})
    post(creek, {"stmt": "INSERT INTO http_dup VALUES (1)"})
    status, body = post(creek, {"stmt": "INSERT INTO http_dup VALUES (1)"})
    assert status == 409 and body["error"]["code"] == 4091


def test_crate_python_client(creek):
    connection = crate_client.connect(creek.url)
    cursor = connection.cursor()
    cursor.execute("CREATE TABLE IF NOT EXISTS crate_c (id INTEGER PRIMARY KEY, v TEXT)")
    cursor.execute("INSERT INTO crate_c (id, v) VALUES (?, ?)", (1, "x"))
    cursor.execute("SELECT v FROM crate_c WHERE id = ?", (1,))
    assert cursor.fetchall() == [["x"]]
    connection.close()


def test_large_bulk_body_and_limit(creek):
    # A bulk request of several MB (wide rows, thousands of them) is one request, as in CrateDB.
    post(creek, {"stmt": "CREATE TABLE http_wide (id INTEGER PRIMARY KEY, body TEXT)"})
    rows = [[i, "x" * 400 + str(i)] for i in range(12_000)]
    status, body = post(creek, {"stmt": "INSERT INTO http_wide VALUES (?, ?)", "bulk_args": rows})
    assert status == 200 and len(body["results"]) == 12_000
    assert all(r["rowcount"] == 1 for r in body["results"])
    # A body over the 100 MB limit is refused from its Content-Length with CrateDB error JSON.
    host, port = creek.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", "/_sql")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(200 * 1024 * 1024))
    conn.endheaders()
    conn.send(b'{"stmt": "select 1", "pad": "')
    response = conn.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"]["code"] == 4000
    conn.close()


def test_crate_client_timestamps_are_epoch_milliseconds(creek):
    """The crate client sends datetimes as epoch milliseconds, as CrateDB reads them."""
    import datetime
    connection = crate_client.connect(creek.url)
    cursor = connection.cursor()
    cursor.execute("CREATE TABLE http_ts (id INTEGER PRIMARY KEY, ts TIMESTAMP WITH TIME ZONE, tags TEXT[])")
    moment = datetime.datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=datetime.timezone.utc)
    cursor.execute("INSERT INTO http_ts (id, ts, tags) VALUES (?, ?, ?)", (1, moment, ["a", "b"]))
    cursor.execute("INSERT INTO http_ts (id, ts) VALUES (?, ?)", (2, 1704164645123))
    cursor.execute("REFRESH TABLE http_ts")
    cursor.execute("SELECT id, ts, tags FROM http_ts ORDER BY id")
    assert cursor.fetchall() == [[1, 1704164645123, ["a", "b"]], [2, 1704164645123, None]]
    cursor.execute("SELECT count(*) FROM http_ts WHERE ts = ?", (1704164645123,))
    assert cursor.fetchone() == [2]
    connection.close()


def test_json_array_arguments_are_arrays(creek):
    post(creek, {"stmt": "CREATE TABLE http_arr (id INTEGER PRIMARY KEY, tags TEXT[], nums BIGINT[])"})
    status, body = post(creek, {"stmt": "INSERT INTO http_arr VALUES (?, ?, ?)",
                                "args": [1, ["a", "b"], [1, 2, None]]})
    assert status == 200, body
    status, body = post(creek, {"stmt": "INSERT INTO http_arr VALUES (?, ?, ?)",
                                "bulk_args": [[2, ["c"], []], [3, [], [4]]]})
    assert [r["rowcount"] for r in body["results"]] == [1, 1], body
    post(creek, {"stmt": "REFRESH TABLE http_arr"})
    status, body = post(creek, {"stmt": "SELECT id, tags, nums FROM http_arr ORDER BY id"})
    assert body["rows"] == [[1, ["a", "b"], [1, 2, None]], [2, ["c"], []], [3, [], [4]]]


def test_rows_are_encoded_by_position(creek):
    post(creek, {"stmt": "CREATE TABLE http_a (id INTEGER PRIMARY KEY)"})
    post(creek, {"stmt": "CREATE TABLE http_b (id INTEGER PRIMARY KEY)"})
    post(creek, {"stmt": "INSERT INTO http_a VALUES (1)"})
    post(creek, {"stmt": "INSERT INTO http_b VALUES (2)"})
    post(creek, {"stmt": "REFRESH TABLE http_a, http_b"})
    status, body = post(creek, {"stmt": "SELECT a.id, b.id FROM http_a a CROSS JOIN http_b b"})
    assert status == 200
    assert body["cols"] == ["id", "id"]
    assert body["rows"] == [[1, 2]]


def test_column_names_and_float_output_follow_cratedb_and_postgresql(creek):
    status, body = post(creek, {"stmt": "SELECT 1, 1 + 1, count(*), 'a', 1e20::double precision, "
                                        "10000000000::double precision, 'NaN'::double precision"})
    assert status == 200, body
    assert body["cols"] == ["1", "(1 + 1)", "count", "'a'",
                            "CAST(1.0E20 AS double precision)",
                            "CAST(10000000000 AS double precision)",
                            "CAST('NaN' AS double precision)"]
    assert body["rows"] == [[1, 2, 1, "a", 1e20, 10000000000, "NaN"]]
    raw = urllib.request.urlopen(urllib.request.Request(
        f"{creek.url}/_sql", data=json.dumps({"stmt": "SELECT 1e20::double precision"}).encode(),
        method="POST")).read().decode()
    assert '"rows":[[1e+20]]' in raw


def test_large_result_streams_and_matches(creek):
    """A result bigger than the response buffer is sent in chunks; every row arrives."""
    status, body = post(creek, {"stmt": "SELECT x, repeat('y', 100) FROM generate_series(1, 200000) AS t(x)"})
    assert status == 200
    assert body["rowcount"] == 200000
    assert body["rows"][0] == [1, "y" * 100] and body["rows"][-1] == [200000, "y" * 100]
