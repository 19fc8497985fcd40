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
