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
