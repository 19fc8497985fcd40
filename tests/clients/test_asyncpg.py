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
