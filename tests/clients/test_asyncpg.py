"""asyncpg (binary protocol, prepared statements) against creek dev."""
import asyncio

import asyncpg
import pytest


def run(coro):
    return asyncio.run(coro)


def test_binary_roundtrip(creek):
    async def body():
        conn = await asyncpg.connect(host="127.0.0.1", port=creek.pg_port, user="crate", database="doc")
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS apg (id BIGINT PRIMARY KEY, name TEXT, v DOUBLE PRECISION, ok BOOLEAN)")
            await conn.executemany("INSERT INTO apg VALUES ($1, $2, $3, $4)", [(1, "a", 0.5, True), (2, "b", None, False)])
            rows = await conn.fetch("SELECT id, name, v, ok FROM apg WHERE id = $1", 1)
            assert [tuple(r) for r in rows] == [(1, "a", 0.5, True)]
            with pytest.raises(asyncpg.exceptions.UndefinedTableError):
                await conn.fetch("SELECT * FROM nope")
            assert await conn.fetchval("SELECT 7") == 7
        finally:
            await conn.close()
    run(body())


def test_arrays_and_type_introspection(creek):
    """asyncpg has no built-in codec for int8[] and friends: it introspects them through
    pg_catalog, then decodes arrays in binary."""
    async def body():
        conn = await asyncpg.connect(host="127.0.0.1", port=creek.pg_port, user="crate", database="doc")
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS apg_arr (id BIGINT PRIMARY KEY, tags TEXT[], nums BIGINT[], ints INTEGER[])")
            await conn.execute("INSERT INTO apg_arr VALUES ($1, $2, $3, $4)", 1, ["a", "b"], [1, 2, 3], [4, None])
            await conn.execute("REFRESH TABLE apg_arr")
            row = await conn.fetchrow("SELECT tags, nums, ints FROM apg_arr WHERE id = $1", 1)
            assert tuple(row) == (["a", "b"], [1, 2, 3], [4, None])
            assert await conn.fetchval("SELECT $1::bigint[]", [7, 8]) == [7, 8]
            types = await conn.fetch(
                "SELECT typname, typelem FROM pg_catalog.pg_type WHERE oid = any($1::oid[]) ORDER BY 1",
                [1016, 1007])
            assert [tuple(t) for t in types] == [("_int4", 23), ("_int8", 20)]
        finally:
            await conn.close()
    run(body())


def test_update_and_delete_describe_their_parameters(creek):
    """asyncpg sends exactly as many arguments as Describe reports, typed as reported."""
    async def body():
        conn = await asyncpg.connect(host="127.0.0.1", port=creek.pg_port, user="crate", database="doc")
        try:
            await conn.execute("CREATE TABLE apg_dml (id BIGINT PRIMARY KEY, v DOUBLE PRECISION, note TEXT)")
            await conn.executemany("INSERT INTO apg_dml VALUES ($1, $2, $3)", [(1, 1.0, "a"), (2, 2.0, "b"), (3, 3.0, "c")])
            assert await conn.execute("UPDATE apg_dml SET v = $1 WHERE id = $2", 3.5, 2) == "UPDATE 1"
            assert await conn.execute("UPDATE apg_dml SET v = v + $1, note = $2 WHERE id >= $3", 1.0, "x", 3) == "UPDATE 1"
            assert await conn.execute("DELETE FROM apg_dml WHERE id = $1", 1) == "DELETE 1"
            statement = await conn.prepare("UPDATE apg_dml SET note = $1 WHERE id = $2")
            assert [t.name for t in statement.get_parameters()] == ["text", "int8"]
            await conn.execute(
                "INSERT INTO apg_dml VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET note = $4",
                2, 0.0, "ignored", "upserted")
            await conn.execute("REFRESH TABLE apg_dml")
            rows = await conn.fetch("SELECT id, v, note FROM apg_dml ORDER BY id")
            assert [tuple(r) for r in rows] == [(2, 3.5, "upserted"), (3, 4.0, "x")]
        finally:
            await conn.close()
    run(body())


def test_column_names_follow_postgresql(creek):
    async def body():
        conn = await asyncpg.connect(host="127.0.0.1", port=creek.pg_port, user="crate", database="doc")
        try:
            row = await conn.fetchrow("SELECT 1, $1::int + 1, count(*), '5'::integer, now() IS NOT NULL", 1)
            assert list(row.keys()) == ["?column?", "?column?", "count", "int4", "?column?"]
        finally:
            await conn.close()
    run(body())
