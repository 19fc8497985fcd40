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
