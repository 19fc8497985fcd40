"""OBJECT columns through real clients: psycopg sends Python dicts as json/jsonb parameters
and gets dicts back, HTTP takes JSON objects as arguments and returns objects (type 12),
COPY FROM a JSON-lines file adds keys and counts bad rows, two writers racing to add one key
with different types get exactly one winner and every acknowledged row reads back, and new
keys survive a kill -9 and a restart."""
import json
import shutil
import signal
import threading

import psycopg
import pytest
from psycopg.types.json import Json, Jsonb

from conftest import Creek, post_sql


@pytest.fixture()
def conn(creek):
    with psycopg.connect(creek.dsn, autocommit=True) as connection:
        yield connection


def test_psycopg_sends_and_receives_dicts(conn):
    conn.execute("DROP TABLE IF EXISTS obj_pg")
    conn.execute("CREATE TABLE obj_pg (id INT PRIMARY KEY, o OBJECT AS (a INT), "
                 "s OBJECT(STRICT) AS (k TEXT))")
    conn.execute("INSERT INTO obj_pg (id, o) VALUES (%s, %s)", (1, Json({"a": 1, "tags": ["x", "y"]})))
    conn.execute("INSERT INTO obj_pg (id, o) VALUES (%s, %s)", (2, Jsonb({"a": 2, "nested": {"deep": True}})))
    # A dict parameter sent as text works too (the column reads JSON text).
    conn.execute("INSERT INTO obj_pg (id, o) VALUES (%s, %s)", (3, json.dumps({"a": 3})))
    conn.execute("REFRESH TABLE obj_pg")
    cur = conn.execute("SELECT id, o FROM obj_pg ORDER BY id")
    assert cur.description[1].type_code == 114  # json
    assert cur.fetchall() == [(1, {"a": 1, "tags": ["x", "y"]}),
                              (2, {"a": 2, "nested": {"deep": True}}),
                              (3, {"a": 3})]
    # The new keys are sub-columns at once, typed by their first values.
    assert conn.execute("SELECT o['tags'], o['nested']['deep'] FROM obj_pg WHERE id = 2 OR id = 1 "
                        "ORDER BY id").fetchall() == [(["x", "y"], None), (None, True)]
    create = conn.execute("SHOW CREATE TABLE obj_pg").fetchone()[0]
    assert '"tags" ARRAY(TEXT)' in create and '"nested" OBJECT(DYNAMIC) AS ("deep" BOOLEAN)' in create, create
    with pytest.raises(psycopg.errors.UndefinedColumn):
        conn.execute("INSERT INTO obj_pg (id, s) VALUES (%s, %s)", (4, Json({"k": "v", "extra": 1})))
    assert conn.execute("SELECT count(*) FROM obj_pg WHERE id = 4").fetchone()[0] == 0


def test_http_objects_in_and_out(creek):
    assert post_sql(creek, {"stmt": "CREATE TABLE obj_http (id INT PRIMARY KEY, o OBJECT)"})[0] == 200
    status, body = post_sql(creek, {"stmt": "INSERT INTO obj_http (id, o) VALUES (?, ?)",
                                    "bulk_args": [[1, {"name": "a", "n": 1}], [2, {"name": "b", "n": 2.5}]]})
    # 2.5 is no bigint: the second row fails alone, the first is written.
    assert status == 200, body
    assert [r["rowcount"] for r in body["results"]] == [1, -2], body
    post_sql(creek, {"stmt": "REFRESH TABLE obj_http"})
    status, body = post_sql(creek, {"stmt": "SELECT id, o, o['name'] FROM obj_http ORDER BY id"}, "?types")
    assert status == 200, body
    assert body["rows"] == [[1, {"name": "a", "n": 1}, "a"]]
    assert body["col_types"][1] == 12
    status, body = post_sql(creek, {"stmt": "SELECT id FROM obj_http WHERE o['n'] = ?", "args": [1]})
    assert body["rows"] == [[1]]


def test_copy_from_json_lines_adds_keys(creek, conn, tmp_path):
    path = tmp_path / "docs.json"
    path.write_text("\n".join([
        json.dumps({"id": 1, "o": {"a": 1, "b": {"c": "x"}}}),
        json.dumps({"id": 2, "o": {"a": "not a number"}}),
        json.dumps({"id": 3, "o": {"d": [1, 2]}}),
    ]) + "\n")
    conn.execute("CREATE TABLE obj_copy (id INT PRIMARY KEY, o OBJECT AS (a INT))")
    summary = conn.execute(f"COPY obj_copy FROM 'file://{path}' RETURN SUMMARY").fetchall()
    assert summary[0][2] == 2 and summary[0][3] == 1, summary
    conn.execute("REFRESH TABLE obj_copy")
    assert conn.execute("SELECT id, o FROM obj_copy ORDER BY id").fetchall() == [
        (1, {"a": 1, "b": {"c": "x"}}), (3, {"d": [1, 2]})]
    assert conn.execute("SELECT id FROM obj_copy WHERE o['b']['c'] = 'x'").fetchall() == [(1,)]


def test_racing_writers_add_one_key_with_different_types(creek):
    """Writers add the same new key at the same moment, one as a number and one as text:
    exactly one type wins, the other writer gets an error, and every acknowledged row reads
    back with its value."""
    with psycopg.connect(creek.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE obj_race (id INT PRIMARY KEY, o OBJECT)")
    rounds = 15
    acknowledged = {}
    errors = []
    barrier = threading.Barrier(2)

    def writer(offset, value):
        with psycopg.connect(creek.dsn, autocommit=True) as conn:
            for r in range(rounds):
                barrier.wait()
                row = r * 2 + offset
                try:
                    conn.execute("INSERT INTO obj_race (id, o) VALUES (%s, %s)",
                                 (row, Json({f"k{r}": value})))
                    acknowledged[row] = (f"k{r}", value)
                except psycopg.Error as error:
                    errors.append((row, error.sqlstate))

    threads = [threading.Thread(target=writer, args=(0, 7)),
               threading.Thread(target=writer, args=(1, "seven"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(acknowledged) == rounds and len(errors) == rounds, (acknowledged, errors)
    assert {code for _, code in errors} <= {"42804", "22P02"}, errors
    with psycopg.connect(creek.dsn, autocommit=True) as conn:
        conn.execute("REFRESH TABLE obj_race")
        stored = dict(conn.execute("SELECT id, o FROM obj_race").fetchall())
    assert stored == {row: {key: value} for row, (key, value) in acknowledged.items()}


def test_object_keys_survive_kill_and_restart():
    server = Creek()
    server.start()
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE obj_restart (id INT PRIMARY KEY, o OBJECT, ig OBJECT(IGNORED))")
            conn.execute("INSERT INTO obj_restart VALUES (1, %s, %s)",
                         (Json({"a": 1, "b": {"c": "x"}}), Json({"free": [1, "two"]})))
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        server.start()
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("REFRESH TABLE obj_restart")
            assert conn.execute("SELECT o, ig, ig['free'] FROM obj_restart WHERE o['b']['c'] = 'x'").fetchall() == [
                ({"a": 1, "b": {"c": "x"}}, {"free": [1, "two"]}, '[1,"two"]')]
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


def test_copy_to_directory_round_trips_objects_and_shapes(conn, tmp_path):
    """COPY TO writes objects (IGNORED keys included) and shapes as JSON objects, and COPY
    FROM reads the files back to the same rows."""
    conn.execute("CREATE TABLE obj_out (id INT PRIMARY KEY, o OBJECT AS (a INT), "
                 "ig OBJECT(IGNORED), area GEO_SHAPE, p GEO_POINT)")
    conn.execute("INSERT INTO obj_out VALUES (1, %s, %s, 'POLYGON ((0 0, 1 0, 1 1, 0 0))', [1.5, 2.5]), "
                 "(2, NULL, NULL, NULL, NULL)",
                 (Json({"a": 1, "b": {"c": [1, 2]}}), Json({"free": "x"})))
    out = tmp_path / "out"
    assert conn.execute(f"COPY obj_out TO DIRECTORY 'file://{out}'").rowcount == 2
    lines = [json.loads(line) for f in sorted(out.iterdir()) for line in f.read_text().splitlines()]
    first = next(line for line in lines if line["id"] == 1)
    assert first["o"] == {"a": 1, "b": {"c": [1, 2]}}
    assert first["ig"] == {"free": "x"}
    assert first["area"]["type"] == "Polygon" and first["p"] == [1.5, 2.5]
    assert next(line for line in lines if line["id"] == 2) == {"id": 2}
    conn.execute("CREATE TABLE obj_back (id INT PRIMARY KEY, o OBJECT AS (a INT), "
                 "ig OBJECT(IGNORED), area GEO_SHAPE, p GEO_POINT)")
    conn.execute(f"COPY obj_back FROM 'file://{out}/*'")
    conn.execute("REFRESH TABLE obj_back")
    conn.execute("REFRESH TABLE obj_out")
    query = "SELECT id, o, ig, area, p FROM {} ORDER BY id"
    assert conn.execute(query.format("obj_back")).fetchall() == conn.execute(query.format("obj_out")).fetchall()
