"""SQLAlchemy (psycopg 3 driver): engine start-up, Core round trips and reflection."""
import psycopg
import sqlalchemy as sa
from psycopg.types import TypeInfo


def engine(creek):
    return sa.create_engine(f"postgresql+psycopg://crate@127.0.0.1:{creek.pg_port}/doc")


def test_reflection(creek):
    eng = engine(creek)
    with eng.begin() as conn:
        conn.execute(sa.text(
            "CREATE TABLE sa_items (id INTEGER, region TEXT, name VARCHAR(40) DEFAULT 'none', "
            "price NUMERIC(10,2) NOT NULL, PRIMARY KEY (id, region))"))
    inspector = sa.inspect(eng)
    assert inspector.has_table("sa_items")
    assert not inspector.has_table("sa_missing")
    assert "sa_items" in inspector.get_table_names()

    columns = {c["name"]: c for c in inspector.get_columns("sa_items")}
    assert list(columns) == ["id", "region", "name", "price"]
    assert isinstance(columns["id"]["type"], sa.INTEGER)
    assert not columns["id"]["nullable"]
    assert isinstance(columns["name"]["type"], sa.VARCHAR) and columns["name"]["type"].length == 40
    assert columns["name"]["default"] == "'none'"
    assert isinstance(columns["price"]["type"], sa.NUMERIC)
    assert (columns["price"]["type"].precision, columns["price"]["type"].scale) == (10, 2)
    assert not columns["price"]["nullable"]

    pk = inspector.get_pk_constraint("sa_items")
    assert pk["constrained_columns"] == ["id", "region"]
    assert pk["name"] == "sa_items_pkey"
    assert inspector.get_foreign_keys("sa_items") == []
    assert inspector.get_indexes("sa_items") == []


def test_autoload_and_core_round_trip(creek):
    eng = engine(creek)
    with eng.begin() as conn:
        conn.execute(sa.text("CREATE TABLE sa_rows (id BIGINT PRIMARY KEY, label TEXT)"))
    table = sa.Table("sa_rows", sa.MetaData(), autoload_with=eng)
    assert [c.name for c in table.primary_key.columns] == ["id"]
    with eng.begin() as conn:
        conn.execute(table.insert(), [{"id": 1, "label": "a"}, {"id": 2, "label": "b"}])
        conn.execute(sa.text("REFRESH TABLE sa_rows"))
    with eng.connect() as conn:
        rows = conn.execute(sa.select(table.c.label).where(table.c.id == 2)).all()
    assert rows == [("b",)]


def test_psycopg_type_info(creek):
    with psycopg.connect(creek.dsn) as conn:
        info = TypeInfo.fetch(conn, "int4")
        assert (info.oid, info.array_oid) == (23, 1007)
        assert TypeInfo.fetch(conn, "hstore") is None
