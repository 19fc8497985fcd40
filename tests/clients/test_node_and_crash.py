"""node-postgres and the `crash` shell against creek dev."""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_node_postgres(creek):
    result = subprocess.run(["node", str(HERE / "node_pg.js"), str(creek.pg_port)],
                            capture_output=True, text=True, timeout=60, cwd=HERE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_crash_shell(creek):
    crash = Path(sys.executable).parent / "crash"
    result = subprocess.run([str(crash), "--hosts", creek.url, "--format", "json", "-c", "SELECT 40 + 2 AS answer"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr + result.stdout
    assert '"answer": 42' in result.stdout
