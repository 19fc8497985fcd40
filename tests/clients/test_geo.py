"""geo_point through real clients: psycopg (text `point`), asyncpg (binary `point`, its
asyncpg.Point both ways), the HTTP endpoint (CrateDB's [lon, lat] and type 13, a point given
as a JSON object), COPY FROM a JSON-lines file and COPY TO DIRECTORY, and the points still
there, still found by distance and within, after a kill -9 and a restart."""
import asyncio
import json
import math
import os
import shutil
import signal
import tempfile

import asyncpg
import psycopg
import pytest
from psycopg import errors

from conftest import Creek, post_sql

EARTH_RADIUS = 6_371_008.8


def haversine(a, b):
    """The great-circle distance in metres, computed here, not by Creek."""
    lon1, lat1, lon2, lat2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + \
        math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS * math.asin(math.sqrt(h))


PLACES = {
    "berlin": (13.405, 52.52),
    "paris": (2.3522, 48.8566),
    "london": (-0.1276, 51.5072),
    "madrid": (-3.7038, 40.4168),
    "new york": (-74.006, 40.7128),
}


def post(creek, body):
    return post_sql(creek, body, "?types")


@pytest.fixture()
def conn(creek):
    with psycopg.connect(creek.dsn, autocommit=True) as connection:
        yield connection


def test_psycopg_points_and_distances(conn):
    conn.execute("DROP TABLE IF EXISTS geo_pg")
    conn.execute("CREATE TABLE geo_pg (name TEXT PRIMARY KEY, p GEO_POINT) CLUSTERED INTO 3 SHARDS")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO geo_pg VALUES (%s, %s)",
                        [(name, f"POINT({lon} {lat})") for name, (lon, lat) in PLACES.items()])
    conn.execute("REFRESH TABLE geo_pg")
    assert conn.execute("SELECT p FROM geo_pg WHERE name = 'paris'").fetchone() == ("(2.3522,48.8566)",)
    here = (2.35, 48.85)
    rows = conn.execute("SELECT name, distance(p, %s) FROM geo_pg ORDER BY distance(p, %s)",
                        ("POINT(2.35 48.85)", "POINT(2.35 48.85)")).fetchall()
    expected = sorted(PLACES, key=lambda n: haversine(PLACES[n], here))
    assert [r[0] for r in rows] == expected
    for name, metres in rows:
        assert metres == pytest.approx(haversine(PLACES[name], here), rel=1e-9)
    # Every radius gives exactly the places the independent computation puts inside it.
    for radius in (1_000, 400_000, 900_000, 1_100_000, 6_000_000):
        found = {r[0] for r in conn.execute(
            "SELECT name FROM geo_pg WHERE distance(p, 'POINT(2.35 48.85)') < %s", (radius,))}
        assert found == {n for n, p in PLACES.items() if haversine(p, here) < radius}, radius
    with pytest.raises(errors.InvalidParameterValue):
        conn.execute("INSERT INTO geo_pg VALUES ('bad', 'POINT(10 95)')")
    with pytest.raises(errors.InvalidTextRepresentation):
        conn.execute("SELECT name FROM geo_pg WHERE within(p, 'POLYGON((0 0, 1 1')")
    create = conn.execute("SHOW CREATE TABLE geo_pg").fetchone()[0]
    assert '"p" GEO_POINT' in create


def test_asyncpg_binary_points(creek):
    async def body():
        conn = await asyncpg.connect(host="127.0.0.1", port=creek.pg_port, user="crate", database="doc")
        try:
            await conn.execute("DROP TABLE IF EXISTS geo_apg")
            await conn.execute("CREATE TABLE geo_apg (id INTEGER PRIMARY KEY, p GEO_POINT)")
            # A point parameter travels as two binary float8.
            await conn.execute("INSERT INTO geo_apg VALUES ($1, $2)", 1, asyncpg.Point(13.405, 52.52))
            await conn.execute("INSERT INTO geo_apg VALUES ($1, $2)", 2, (-3.7038, 40.4168))
            await conn.execute("REFRESH TABLE geo_apg")
            rows = await conn.fetch("SELECT id, p FROM geo_apg ORDER BY id")
            assert [(r["id"], tuple(r["p"])) for r in rows] == [(1, (13.405, 52.52)), (2, (-3.7038, 40.4168))]
            assert isinstance(rows[0]["p"], asyncpg.Point)
            inside = await conn.fetch(
                "SELECT id FROM geo_apg WHERE within(p, $1)", "POLYGON((10 50, 15 50, 15 55, 10 55, 10 50))")
            assert [r["id"] for r in inside] == [1]
        finally:
            await conn.close()
    asyncio.run(body())


def test_http_points(creek):
    assert post(creek, {"stmt": "DROP TABLE IF EXISTS geo_http"})[0] == 200
    assert post(creek, {"stmt": "CREATE TABLE geo_http (id INTEGER PRIMARY KEY, p GEO_POINT)"})[0] == 200
    status, body = post(creek, {"stmt": "INSERT INTO geo_http VALUES (?, ?)",
                                "bulk_args": [[1, [13.405, 52.52]], [2, {"lon": 2.3522, "lat": 48.8566}],
                                              [3, "POINT(-0.1276 51.5072)"], [4, [500, 1]]]})
    assert status == 200
    assert [r["rowcount"] for r in body["results"]] == [1, 1, 1, -2]
    post(creek, {"stmt": "REFRESH TABLE geo_http"})
    status, body = post(creek, {"stmt": "SELECT id, p FROM geo_http ORDER BY id"})
    assert status == 200
    assert body["rows"] == [[1, [13.405, 52.52]], [2, [2.3522, 48.8566]], [3, [-0.1276, 51.5072]]]
    assert body["col_types"][1] == 13
    status, body = post(creek, {"stmt": "SELECT id FROM geo_http WHERE distance(p, ?) < ? ORDER BY id",
                                "args": ["POINT(2.35 48.85)", 400_000]})
    assert body["rows"] == [[2], [3]]
    status, body = post(creek, {"stmt": "INSERT INTO geo_http VALUES (9, 'POINT(1)')"})
    assert status == 400 and "invalid geo point" in body["error"]["message"]


def test_copy_points_from_and_to_files(conn):
    folder = tempfile.mkdtemp(prefix="creek-geo-")
    try:
        with open(os.path.join(folder, "places.json"), "w") as f:
            for index, (name, (lon, lat)) in enumerate(PLACES.items()):
                point = [{"lon": lon, "lat": lat}, [lon, lat], f"POINT({lon} {lat})"][index % 3]
                f.write(json.dumps({"name": name, "p": point}) + "\n")
            f.write(json.dumps({"name": "nowhere", "p": {"lon": 1}}) + "\n")
        conn.execute("DROP TABLE IF EXISTS geo_copy")
        conn.execute("CREATE TABLE geo_copy (name TEXT PRIMARY KEY, p GEO_POINT) CLUSTERED INTO 2 SHARDS")
        summary = conn.execute(f"COPY geo_copy FROM 'file://{folder}/places.json' RETURN SUMMARY").fetchall()
        assert [(r[2], r[3]) for r in summary] == [(len(PLACES), 1)]
        conn.execute("REFRESH TABLE geo_copy")
        rows = dict(conn.execute("SELECT name, longitude(p) || ',' || latitude(p) FROM geo_copy").fetchall())
        assert rows == {name: f"{lon},{lat}" for name, (lon, lat) in PLACES.items()}
        out = os.path.join(folder, "out")
        os.mkdir(out)
        conn.execute(f"COPY geo_copy TO DIRECTORY 'file://{out}'")
        exported = {}
        for file in os.listdir(out):
            with open(os.path.join(out, file)) as f:
                for line in f:
                    row = json.loads(line)
                    exported[row["name"]] = tuple(row["p"])
        assert exported == PLACES
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_points_survive_kill_and_restart():
    server = Creek()
    server.start()
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE geo_restart (name TEXT PRIMARY KEY, p GEO_POINT) CLUSTERED INTO 2 SHARDS")
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO geo_restart VALUES (%s, %s)",
                                [(n, f"[{lon}, {lat}]") for n, (lon, lat) in PLACES.items()])
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        server.start()
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("REFRESH TABLE geo_restart")
            found = {r[0] for r in conn.execute(
                "SELECT name FROM geo_restart WHERE within(p, 'POLYGON((-5 40, 15 40, 15 55, -5 55, -5 40))')")}
            assert found == {"berlin", "paris", "london", "madrid"}
            near = conn.execute("SELECT name FROM geo_restart WHERE distance(p, '(-74, 40.7)') < 10000").fetchall()
            assert near == [("new york",)]
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


def circle(lon, lat, radius, vertices):
    ring = [[lon + radius * math.cos(2 * math.pi * i / vertices),
             lat + radius * math.sin(2 * math.pi * i / vertices)] for i in range(vertices)]
    return {"type": "Polygon", "coordinates": [ring + [ring[0]]]}


def test_shapes_through_psycopg_http_and_copy(conn, creek):
    conn.execute("DROP TABLE IF EXISTS shapes")
    conn.execute("CREATE TABLE shapes (name TEXT PRIMARY KEY, s GEO_SHAPE) CLUSTERED INTO 2 SHARDS")
    # A polygon of 1,500 vertices (about 60 KB of GeoJSON); one of 4,000 is past the
    # 65,530 bytes a shard stores in one value, and refused with a clear error.
    big = circle(10, 10, 5, 1500)
    too_big = circle(10, 10, 5, 4000)
    with pytest.raises(errors.ProgramLimitExceeded, match="shape too large"):
        conn.execute("INSERT INTO shapes VALUES ('too big', %s)", (json.dumps(too_big),))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO shapes VALUES (%s, %s)", [
            ("square", "POLYGON ((0 0, 2 0, 2 2, 0 2, 0 0))"),
            ("big", json.dumps(big)),
            ("line", "LINESTRING (-1 -1, 30 30)"),
        ])
    conn.execute("REFRESH TABLE shapes")
    # psycopg reads PostgreSQL's json as Python objects.
    shape = conn.execute("SELECT s FROM shapes WHERE name = 'square'").fetchone()[0]
    assert shape == {"type": "Polygon",
                     "coordinates": [[[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0], [0.0, 0.0]]]}
    # With parameters (the extended protocol's Describe), the column is json too.
    assert conn.execute("SELECT s FROM shapes WHERE name = %s", ("square",)).fetchone()[0] == shape
    # Nesting deep enough to exhaust a parser's stack is refused before any parser runs.
    deep = "GEOMETRYCOLLECTION(" * 3000 + "POINT (1 1)" + ")" * 3000
    with pytest.raises(errors.InvalidTextRepresentation, match="nested more than"):
        conn.execute("SELECT count(*) FROM shapes WHERE intersects(s, %s)", (deep,))
    with pytest.raises(errors.InvalidTextRepresentation, match="nested more than"):
        conn.execute("INSERT INTO shapes VALUES ('deep', %s)", (deep,))
    stored = conn.execute("SELECT s FROM shapes WHERE name = 'big'").fetchone()[0]
    assert len(stored["coordinates"][0]) == 1501
    assert stored["coordinates"][0][17] == pytest.approx(big["coordinates"][0][17])
    found = [r[0] for r in conn.execute(
        "SELECT name FROM shapes WHERE intersects(s, 'POINT (12 12)') ORDER BY name")]
    assert found == ["big", "line"]
    found = [r[0] for r in conn.execute(
        "SELECT name FROM shapes WHERE within(s, %s) ORDER BY name",
        ("POLYGON ((-1 -1, 16 -1, 16 16, -1 16, -1 -1))",))]
    assert found == ["big", "square"]
    # The relation is pushed into the shard index as a box query.
    plan = "\n".join(r[1] for r in conn.execute(
        "EXPLAIN SELECT name FROM shapes WHERE intersects(s, 'POINT (12 12)')"))
    assert "pushed_filters=[intersects(s, Utf8(\"POINT (12 12)\"))]" in plan, plan
    # HTTP: GeoJSON objects with CrateDB's type 14; objects accepted as arguments.
    status, body = post(creek, {"stmt": "INSERT INTO shapes VALUES (?, ?)",
                                "args": ["tri", {"type": "Polygon",
                                                 "coordinates": [[[0, 0], [1, 0], [0, 1], [0, 0]]]}]})
    assert status == 200, body
    post(creek, {"stmt": "REFRESH TABLE shapes"})
    status, body = post(creek, {"stmt": "SELECT name, s FROM shapes WHERE name IN ('tri', 'line') ORDER BY name"})
    assert status == 200, body
    assert body["col_types"][1] == 14
    assert body["rows"] == [
        ["line", {"type": "LineString", "coordinates": [[-1.0, -1.0], [30.0, 30.0]]}],
        ["tri", {"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]}],
    ]
    status, body = post(creek, {"stmt": "INSERT INTO shapes VALUES ('bad', 'POLYGON ((0 0, 1 1))')"})
    assert status == 400 and "invalid shape" in body["error"]["message"], body
    # COPY FROM JSON lines: GeoJSON objects and WKT text.
    folder = tempfile.mkdtemp(prefix="creek-shapes-")
    try:
        with open(os.path.join(folder, "shapes.json"), "w") as f:
            f.write(json.dumps({"name": "c1", "s": {"type": "Point", "coordinates": [1, 1]}}) + "\n")
            f.write(json.dumps({"name": "c2", "s": "LINESTRING (0 5, 5 0)"}) + "\n")
            f.write(json.dumps({"name": "c3", "s": {"type": "Blob"}}) + "\n")
        summary = conn.execute(f"COPY shapes FROM 'file://{folder}/shapes.json' RETURN SUMMARY").fetchall()
        assert [(r[2], r[3]) for r in summary] == [(2, 1)]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    conn.execute("REFRESH TABLE shapes")
    found = [r[0] for r in conn.execute(
        "SELECT name FROM shapes WHERE intersects(s, 'POLYGON ((0.5 0.5, 1.5 0.5, 1.5 1.5, 0.5 1.5, 0.5 0.5))') "
        "ORDER BY name")]
    assert found == ["c1", "line", "square", "tri"]
