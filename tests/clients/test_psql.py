"""psql, the command-line client users start with."""
import subprocess


def psql(creek, *commands):
    args = ["psql", "-X", "-h", "127.0.0.1", "-p", str(creek.pg_port), "-U", "crate", "-d", "doc",
            "-v", "VERBOSITY=verbose", "--no-psqlrc", "-A", "-t"]
    for command in commands:
        args += ["-c", command]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def test_psql_queries(creek):
    result = psql(creek, "CREATE TABLE psql_t (id INTEGER PRIMARY KEY, v TEXT)",
                  "INSERT INTO psql_t VALUES (1, 'one'), (2, 'two')",
                  "SELECT v FROM psql_t WHERE id = 2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "two"


def test_psql_error_shows_sqlstate(creek):
    result = psql(creek, "SELECT * FROM psql_missing")
    assert result.returncode != 0
    assert "42P01" in result.stderr


def test_psql_copy_from_file(creek, tmp_path):
    data = tmp_path / "rows.csv"
    data.write_text("id,v\n1,one\n2,\"two, too\"\n")
    result = psql(creek, "CREATE TABLE psql_copy (id INTEGER PRIMARY KEY, v TEXT)",
                  f"\\copy psql_copy FROM '{data}' WITH (FORMAT csv, HEADER true)",
                  "REFRESH TABLE psql_copy",
                  "SELECT v FROM psql_copy ORDER BY id")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-2:] == ["one", "two, too"]


def psql_table(creek, command):
    """Runs a psql meta-command with aligned output, as a user sees it."""
    args = ["psql", "-X", "-h", "127.0.0.1", "-p", str(creek.pg_port), "-U", "crate", "-d", "doc",
            "--no-psqlrc", "-c", command]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def test_psql_describe_commands(creek):
    setup = psql(creek,
                 "CREATE TABLE psql_desc (id INTEGER PRIMARY KEY, name VARCHAR(20) DEFAULT 'x', "
                 "price NUMERIC(10,2) NOT NULL, tags TEXT[])",
                 "CREATE VIEW psql_desc_v AS SELECT id, name FROM psql_desc")
    assert setup.returncode == 0, setup.stderr

    listing = psql_table(creek, "\\dt")
    assert listing.returncode == 0, listing.stderr
    assert "psql_desc" in listing.stdout and "table" in listing.stdout
    assert "psql_desc_v" not in listing.stdout

    relations = psql_table(creek, "\\d")
    assert "psql_desc_v" in relations.stdout and "view" in relations.stdout

    table = psql_table(creek, "\\d psql_desc")
    assert table.returncode == 0, table.stderr
    lines = [" ".join(line.split()) for line in table.stdout.splitlines()]
    assert 'Table "doc.psql_desc"' in lines[0]
    assert "id | integer | | not null |" in lines
    assert "name | character varying(20) | | | 'x'" in lines
    assert "price | numeric(10,2) | | not null |" in lines
    assert "tags | text[] | | |" in lines
    assert '"psql_desc_pkey" PRIMARY KEY, tantivy (id)' in lines

    view = psql_table(creek, "\\d psql_desc_v")
    assert view.returncode == 0, view.stderr
    assert 'View "doc.psql_desc_v"' in view.stdout

    index = psql_table(creek, "\\d psql_desc_pkey")
    assert index.returncode == 0, index.stderr
    assert 'for table "doc.psql_desc"' in index.stdout

    databases = psql_table(creek, "\\l")
    assert databases.returncode == 0, databases.stderr
    assert "crate" in databases.stdout and "UTF8" in databases.stdout

    schemas = psql_table(creek, "\\dn")
    assert schemas.returncode == 0, schemas.stderr
    assert "doc" in schemas.stdout

    missing = psql_table(creek, "\\d psql_nope")
    assert "Did not find any relation named" in missing.stderr


TAGS = ("CREATE", "INSERT", "REFRESH", "PREPARE", "DEALLOCATE", "DROP", "SET")


def values(result):
    """The value lines of a psql -A -t run, without the command tags."""
    return [line for line in result.stdout.split("\n") if line and not line.startswith(TAGS)]


def test_sql_prepare_execute_deallocate(creek):
    result = psql(creek, "CREATE TABLE psql_prep (id INTEGER PRIMARY KEY, v TEXT)",
                  "INSERT INTO psql_prep VALUES (1, 'one'), (2, 'two')",
                  "REFRESH TABLE psql_prep",
                  "PREPARE q(int) AS SELECT v FROM psql_prep WHERE id = $1; EXECUTE q(2); EXECUTE q('1')",
                  "PREPARE ins(int, text) AS INSERT INTO psql_prep VALUES ($1, $2); EXECUTE ins(3, 'three'); "
                  "DEALLOCATE ins; REFRESH TABLE psql_prep; SELECT count(*) FROM psql_prep")
    assert result.returncode == 0, result.stderr
    assert values(result) == ["two", "one", "3"]
    missing = psql(creek, "EXECUTE nothing_here(1)")
    assert missing.returncode != 0 and "26000" in missing.stderr
    wrong = psql(creek, "PREPARE two(int) AS SELECT $1; EXECUTE two(1, 2)")
    assert wrong.returncode != 0 and "42601" in wrong.stderr
    dup = psql(creek, "PREPARE d AS SELECT 1; PREPARE d AS SELECT 2")
    assert dup.returncode != 0 and "42P05" in dup.stderr
    gone = psql(creek, "DEALLOCATE never_prepared")
    assert gone.returncode != 0 and "26000" in gone.stderr


def test_float_output_matches_postgresql(creek):
    result = psql(creek, "SELECT 10000000000::double precision, 1e20::float8, 123456789012345678::float8, "
                         "'Infinity'::float8, '-Infinity'::float8, 'NaN'::float8, '-0'::float8, 0.1::float8 + 0.2, "
                         "1.5e-7::float8, 1e6::real, ARRAY[1.5, 1e20]::float8[]")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("10000000000|1e+20|1.2345678901234568e+17|Infinity|-Infinity|NaN|-0|"
                                     "0.30000000000000004|1.5e-07|1e+06|{1.5,1e+20}")
    fewer = psql(creek, "SET extra_float_digits = 0", "SELECT 0.1::float8 + 0.2")
    assert fewer.stdout.strip().splitlines()[-1] == "0.3"


def test_column_names_follow_postgresql(creek):
    args = ["psql", "-X", "-h", "127.0.0.1", "-p", str(creek.pg_port), "-U", "crate", "-d", "doc",
            "--no-psqlrc", "-A", "-c", "SELECT 1, 'a'::text, count(*), sum(2), '1'::int, abs(-1), CASE WHEN true THEN 1 END"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "?column?|text|count|sum|int4|abs|case"


def test_in_subquery_in_select_list(creek):
    result = psql(creek, "CREATE TABLE psql_in (a INTEGER)",
                  "CREATE TABLE psql_in_null (a INTEGER)",
                  "CREATE TABLE psql_in_empty (a INTEGER)",
                  "INSERT INTO psql_in VALUES (1), (2), (3)",
                  "INSERT INTO psql_in_null VALUES (1), (NULL)",
                  "REFRESH TABLE psql_in, psql_in_null, psql_in_empty",
                  "SELECT 1 IN (SELECT a FROM psql_in), 4 IN (SELECT a FROM psql_in), "
                  "3 NOT IN (SELECT a FROM psql_in), 4 NOT IN (SELECT a FROM psql_in), "
                  "NULL IN (SELECT a FROM psql_in), NULL IN (SELECT a FROM psql_in_empty), "
                  "2 IN (SELECT a FROM psql_in_null), 1 IN (SELECT a FROM psql_in_null), "
                  "2 NOT IN (SELECT a FROM psql_in_null), 1 NOT IN (SELECT a FROM psql_in_empty)",
                  "SELECT a, a + 1 IN (SELECT a FROM psql_in) FROM psql_in ORDER BY a")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-4] == "t|f|f|t||f||t||t"
    assert lines[-3:] == ["1|t", "2|t", "3|f"]


def test_drop_index(creek):
    ok = psql(creek, "CREATE TABLE psql_idx (id INTEGER PRIMARY KEY, v TEXT)",
              "CREATE INDEX psql_idx_v ON psql_idx (v)",
              "CREATE INDEX ON psql_idx (v)",
              "SELECT indexname FROM pg_indexes WHERE tablename = 'psql_idx' ORDER BY 1",
              "DROP INDEX psql_idx_v",
              "DROP INDEX IF EXISTS psql_idx_v",
              "DROP INDEX psql_idx_v_idx")
    assert ok.returncode == 0, ok.stderr
    assert values(ok) == ["psql_idx_pkey", "psql_idx_v", "psql_idx_v_idx"]
    missing = psql(creek, "DROP INDEX psql_idx_v")
    assert missing.returncode != 0 and "42704" in missing.stderr
    pkey = psql(creek, "DROP INDEX psql_idx_pkey")
    assert pkey.returncode != 0 and "2BP01" in pkey.stderr
    unique = psql(creek, "CREATE UNIQUE INDEX psql_idx_u ON psql_idx (v)")
    assert unique.returncode != 0 and "0A000" in unique.stderr
