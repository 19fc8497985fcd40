"""COPY FROM files: JSON lines and CSV from the local file system and from S3 (a moto server
this test starts on loopback, a real S3 API over HTTP), with globs, RETURN SUMMARY counting
bad rows per file, and the statement failing without it when any row could not be imported."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from servers import free_port  # noqa: E402


@pytest.fixture()
def conn(creek):
    with psycopg.connect(creek.dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture()
def table(conn):
    conn.execute("DROP TABLE IF EXISTS copy_people")
    conn.execute("CREATE TABLE copy_people (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                 "score DOUBLE PRECISION, tags TEXT[], seen TIMESTAMP)")
    yield "copy_people"
    conn.execute("DROP TABLE copy_people")


@pytest.fixture()
def files():
    directory = Path(tempfile.mkdtemp(prefix="creek-copy-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def write_lines(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_json_lines_from_a_glob_with_a_summary(conn, table, files):
    write_lines(files / "a.json", [
        {"id": 1, "name": "ann", "score": 1.5, "tags": ["x", "y"], "seen": "2024-01-02T03:04:05"},
        {"id": 2, "name": "bob", "score": None},
    ])
    (files / "b.json").write_text(
        json.dumps({"id": 3, "name": "cy"}) + "\n"
        + "not json\n"
        + json.dumps({"id": 4, "name": None}) + "\n"          # NOT NULL
        + json.dumps({"id": 5, "name": "ed", "nope": 1}) + "\n"  # unknown column
        + json.dumps({"id": 1, "name": "dup"}) + "\n"          # duplicate key
        + json.dumps({"id": 6, "name": "fy", "score": "high"}) + "\n"  # not a number
        + json.dumps({"id": 7, "name": "gus"})                 # last line without newline
    )
    (files / "c.txt").write_text("ignored by the glob\n")
    rows = conn.execute(f"COPY {table} FROM 'file://{files}/*.json' RETURN SUMMARY").fetchall()
    by_uri = {row[1]: row for row in rows}
    assert set(by_uri) == {f"file://{files}/a.json", f"file://{files}/b.json"}
    a = by_uri[f"file://{files}/a.json"]
    b = by_uri[f"file://{files}/b.json"]
    assert (a[2], a[3]) == (2, 0)
    assert (b[2], b[3]) == (2, 5)
    errors_of_b = json.loads(b[4])
    lines = sorted(line for e in errors_of_b.values() for line in e["line_numbers"])
    assert lines == [2, 3, 4, 5, 6]
    assert any("does not exist" in message for message in errors_of_b)
    assert any("duplicate key" in message for message in errors_of_b)
    assert conn.execute(f"SELECT id, name, score, tags, seen FROM {table} ORDER BY id").fetchall() == [
        (1, "ann", 1.5, ["x", "y"], datetime(2024, 1, 2, 3, 4, 5)),
        (2, "bob", None, None, None),
        (3, "cy", None, None, None),
        (7, "gus", None, None, None),
    ]


def test_generated_columns_are_computed_for_copied_rows(conn, files):
    conn.execute("DROP TABLE IF EXISTS copy_generated")
    conn.execute("CREATE TABLE copy_generated (id INTEGER PRIMARY KEY, ts TIMESTAMP, "
                 "day TIMESTAMP GENERATED ALWAYS AS date_trunc('day', ts), "
                 "twice INTEGER GENERATED ALWAYS AS id * 2)")
    write_lines(files / "g.json", [
        {"id": 1, "ts": "2024-05-06T07:08:09"},
        {"id": 2, "ts": "2024-05-07T00:00:00", "twice": 4},   # given and matching
        {"id": 3, "ts": "2024-05-08T10:00:00", "twice": 7},   # given and wrong: a bad row
    ])
    rows = conn.execute(f"COPY copy_generated FROM 'file://{files}/g.json' RETURN SUMMARY").fetchall()
    assert [(r[2], r[3]) for r in rows] == [(2, 1)]
    assert any("does not match its expression" in message for message in json.loads(rows[0][4]))
    conn.execute("REFRESH TABLE copy_generated")
    assert conn.execute("SELECT id, day, twice FROM copy_generated ORDER BY id").fetchall() == [
        (1, datetime(2024, 5, 6), 2),
        (2, datetime(2024, 5, 7), 4),
    ]
    create = conn.execute("SHOW CREATE TABLE copy_generated").fetchone()[0]
    assert "\"twice\" INTEGER GENERATED ALWAYS AS (id * 2)" in create
    conn.execute("DROP TABLE copy_generated")


def test_without_a_summary_bad_rows_fail_the_statement(conn, table, files):
    write_lines(files / "ok.json", [{"id": 10, "name": "a"}, {"id": 11, "name": "b"}])
    cursor = conn.execute(f"COPY {table} FROM 'file://{files}/ok.json'")
    assert cursor.rowcount == 2
    write_lines(files / "bad.json", [{"id": 12, "name": "c"}, {"id": 13}])
    with pytest.raises(errors.BadCopyFileFormat) as failure:
        conn.execute(f"COPY {table} FROM 'file://{files}/bad.json'")
    assert "1 row(s) could not be imported (1 were" in str(failure.value)
    assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (3,)


def test_csv_with_a_header_and_named_columns(conn, table, files):
    (files / "people.csv").write_text('name,id\n"smith, j",20\nlee,21\n')
    assert conn.execute(f"COPY {table} FROM 'file://{files}/people.csv'").rowcount == 2
    (files / "plain.csv").write_text("22;x\n23;y\n")
    cursor = conn.execute(f"COPY {table} (id, name) FROM 'file://{files}/plain.csv' "
                          "WITH (format = 'csv', header = false, delimiter = ';')")
    assert cursor.rowcount == 2
    assert conn.execute(f"SELECT id, name FROM {table} ORDER BY id").fetchall() == [
        (20, "smith, j"), (21, "lee"), (22, "x"), (23, "y")]


def test_bad_statements_are_refused(conn, table, files):
    with pytest.raises(errors.UndefinedObject):
        conn.execute(f"COPY {table} FROM 'file://{files}/missing.json'")
    assert conn.execute(f"COPY {table} FROM 'file://{files}/none-*.json' RETURN SUMMARY").fetchall() == []
    with pytest.raises(errors.InvalidParameterValue):
        conn.execute(f"COPY {table} FROM 'file://{files}/x.json' WITH (compression = 'gzip')")
    with pytest.raises(errors.FeatureNotSupported):
        conn.execute(f"COPY {table} FROM 'http://example.com/x.json'")
    with pytest.raises(errors.UndefinedColumn):
        conn.execute(f"COPY {table} (nope) FROM 'file://{files}/x.json'")


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on loopback, with a bucket."""
    boto3 = pytest.importorskip("boto3")
    port = free_port()
    venv_bin = Path(sys.executable).parent
    proc = subprocess.Popen([str(venv_bin / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto_server did not start")
            time.sleep(0.1)
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="secret")
    client.create_bucket(Bucket="creek-test")
    yield client, endpoint
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)


def test_json_lines_from_s3(conn, table, s3):
    client, endpoint = s3
    for part in range(3):
        body = "".join(json.dumps({"id": 100 + part * 10 + i, "name": f"s3-{part}-{i}"}) + "\n"
                       for i in range(10))
        client.put_object(Bucket="creek-test", Key=f"people/part-{part}.json", Body=body.encode())
    client.put_object(Bucket="creek-test", Key="people/readme.md", Body=b"not data")
    options = (f"WITH (access_key_id = 'test', secret_access_key = 'secret', "
               f"endpoint = '{endpoint}', region = 'us-east-1')")
    rows = conn.execute(f"COPY {table} FROM 's3://creek-test/people/part-*.json' {options} "
                        "RETURN SUMMARY").fetchall()
    assert sorted((row[1], row[2], row[3]) for row in rows) == [
        (f"s3://creek-test/people/part-{p}.json", 10, 0) for p in range(3)]
    assert conn.execute(f"SELECT count(*), min(id), max(id) FROM {table}").fetchone() == (30, 100, 129)
    with pytest.raises(errors.UndefinedObject):
        conn.execute(f"COPY {table} FROM 's3://creek-test/people/missing.json' {options}")


def jobs(conn):
    return conn.execute("SELECT id, node, started, stmt, rows_done, bytes_done FROM sys.jobs").fetchall()


def test_sys_jobs_lists_running_statements(conn, creek):
    listed = jobs(conn)
    own = [job for job in listed if job[3].startswith("SELECT id, node, started, stmt")]
    assert len(own) == 1, listed
    job_id, node, started, _, rows_done, bytes_done = own[0]
    assert len(job_id) == 36 and node and started.tzinfo is not None
    assert (rows_done, bytes_done) == (None, None)
    # Ended statements are gone.
    assert not [job for job in jobs(conn) if job[0] == job_id]


def test_a_copy_from_stdin_shows_its_progress(conn, table, creek):
    with psycopg.connect(creek.dsn, autocommit=True) as other:
        with other.cursor() as cursor:
            with cursor.copy(f"COPY {table} (id, name) FROM STDIN") as copy:
                for i in range(25_000):
                    copy.write_row((i, f"n{i}"))
                deadline = time.time() + 30
                while True:
                    running = [job for job in jobs(conn) if job[3].startswith("COPY")]
                    if running and running[0][4] and running[0][4] >= 10_000:
                        break
                    assert time.time() < deadline, running
                    time.sleep(0.1)
                assert running[0][5] > 100_000
    assert not [job for job in jobs(conn) if job[3].startswith("COPY")]
    assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (25_000,)


def test_a_long_copy_from_a_file_shows_progress_and_can_be_cancelled(conn, table, creek, files):
    path = files / "many.json"
    with path.open("w") as out:
        for i in range(1_000_000):
            out.write(f'{{"id": {i}, "name": "row {i}"}}\n')
    failure = []

    def run():
        try:
            with psycopg.connect(creek.dsn, autocommit=True) as copying:
                holder.append(copying)
                copying.execute(f"COPY {table} FROM 'file://{path}'")
        except Exception as error:  # noqa: BLE001 - examined below
            failure.append(error)

    import threading
    holder = []
    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.time() + 60
    while True:
        running = [job for job in jobs(conn) if job[3].startswith("COPY")]
        if running and running[0][4]:
            break
        assert time.time() < deadline and thread.is_alive(), (running, failure)
        time.sleep(0.05)
    assert running[0][3] == f"COPY {table} FROM 'file://{path}'"
    assert running[0][5] > 0
    holder[0].cancel()
    thread.join(60)
    assert len(failure) == 1 and isinstance(failure[0], errors.QueryCanceled), failure
    assert not [job for job in jobs(conn) if job[3].startswith("COPY")]


def test_csv_line_numbers_blank_lines_and_an_unclosed_quote(conn, table, files):
    # Line 3 holds a quoted newline, so the bad record after it is on line 5; blank lines
    # are skipped; the rows before an unclosed quote are written, the rest is one bad record.
    (files / "tricky.csv").write_text(
        "id,name\n"
        "1,\"two\nlines\"\n"
        "\n"
        "x,bad id\n"
        "\r\n"
        "2,ok\n"
        "3,\"never closed\n"
        "4,lost\n")
    rows = conn.execute(f"COPY {table} FROM 'file://{files}/tricky.csv' RETURN SUMMARY").fetchall()
    assert [(r[2], r[3]) for r in rows] == [(2, 2)]
    errors_of = json.loads(rows[0][4])
    lines = sorted(line for e in errors_of.values() for line in e["line_numbers"])
    assert lines == [5, 8], errors_of
    assert any("not closed" in message for message in errors_of)
    assert conn.execute(f"SELECT id, name FROM {table} ORDER BY id").fetchall() == [
        (1, "two\nlines"), (2, "ok")]


def test_the_error_reported_is_the_first_by_line(conn, table, files):
    (files / "first.json").write_text(
        json.dumps({"id": 1, "name": "a", "score": "high"}) + "\n"   # fails when converted
        + "{broken\n")
    with pytest.raises(errors.BadCopyFileFormat) as failure:
        conn.execute(f"COPY {table} FROM 'file://{files}/first.json'")
    assert "first.json line 1:" in str(failure.value), str(failure.value)


def test_a_summary_over_the_extended_protocol(conn, table, files):
    write_lines(files / "x.json", [{"id": 1, "name": "a"}])
    rows = conn.execute(f"COPY {table} FROM 'file://{files}/x.json' RETURN SUMMARY",
                        prepare=True).fetchall()
    assert [(r[1], r[2], r[3]) for r in rows] == [(f"file://{files}/x.json", 1, 0)]


def test_credentials_in_an_s3_uri_are_refused_and_not_shown(conn, table):
    with pytest.raises(errors.InvalidParameterValue) as failure:
        conn.execute(f"COPY {table} FROM 's3://KEY:SECRET@bucket/x.json'")
    assert "SECRET" not in str(failure.value)


def test_copy_to_directory_and_back(conn, table, files):
    conn.execute(f"CREATE TABLE copy_out (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                 "score DOUBLE PRECISION, tags TEXT[], seen TIMESTAMP) CLUSTERED INTO 3 SHARDS")
    try:
        conn.execute("INSERT INTO copy_out VALUES (1, 'a', 1.5, ARRAY['x', 'y'], '2024-01-02 03:04:05'), "
                     "(2, 'b', NULL, NULL, NULL)")
        conn.execute("INSERT INTO copy_out (id, name, score) SELECT x, 'n' || x, x / 2.0 "
                     "FROM generate_series(3, 1000) AS s(x)")
        out = files / "out"
        # Written at once, no REFRESH: the COPY sees every acknowledged write.
        assert conn.execute(f"COPY copy_out TO DIRECTORY 'file://{out}'").rowcount == 1000
        written = sorted(p.name for p in out.iterdir())
        assert written == [f"copy_out_{shard}_.json" for shard in range(3)]
        lines = [json.loads(line) for p in out.iterdir() for line in p.read_text().splitlines()]
        assert len(lines) == 1000
        first = next(line for line in lines if line["id"] == 1)
        assert first["name"] == "a" and first["tags"] == ["x", "y"] and first["score"] == 1.5
        assert conn.execute(f"COPY {table} FROM 'file://{out}/*.json'").rowcount == 1000
        assert (conn.execute(f"SELECT id, name, score, tags, seen FROM {table} ORDER BY id").fetchall()
                == conn.execute("SELECT id, name, score, tags, seen FROM copy_out ORDER BY id").fetchall())
        # Named columns only.
        assert conn.execute(f"COPY copy_out (id) TO DIRECTORY 'file://{files}/ids'").rowcount == 1000
        keys = {key for p in (files / "ids").iterdir() for line in p.read_text().splitlines()
                for key in json.loads(line)}
        assert keys == {"id"}
        with pytest.raises(errors.FeatureNotSupported):
            conn.execute(f"COPY copy_out TO DIRECTORY 'file://{out}' WITH (format = 'csv')")
        with pytest.raises(errors.InvalidParameterValue):
            conn.execute(f"COPY copy_out TO DIRECTORY 'file://{out}/*'")
    finally:
        conn.execute("DROP TABLE copy_out")


def test_copy_to_an_s3_directory(conn, table, s3):
    client, endpoint = s3
    options = (f"WITH (access_key_id = 'test', secret_access_key = 'secret', "
               f"endpoint = '{endpoint}', region = 'us-east-1')")
    conn.execute(f"INSERT INTO {table} (id, name) SELECT x, 'r' || x FROM generate_series(1, 500) AS s(x)")
    assert conn.execute(f"COPY {table} TO DIRECTORY 's3://creek-test/export/' {options}").rowcount == 500
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="creek-test", Prefix="export/")["Contents"]]
    assert keys and all(k.startswith(f"export/{table}_") and k.endswith("_.json") for k in keys)
    total = sum(len(client.get_object(Bucket="creek-test", Key=k)["Body"].read().splitlines())
                for k in keys)
    assert total == 500
