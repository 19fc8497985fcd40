"""The full-text workload: a `logs` table (id, ts, level, service, host, and a message of
10-40 words drawn from a Zipf vocabulary), loaded by COPY into Creek and PostgreSQL, then the
top 10 by relevance for 1-, 2- and 3-word queries, a phrase and a filtered query.

Creek runs `MATCH(message, ...) ORDER BY _score DESC LIMIT 10` (BM25) on a FULLTEXT index
with the standard analyzer; PostgreSQL `tsv @@ query ORDER BY ts_rank(tsv, query) DESC LIMIT
10` on a GIN index of `to_tsvector('simple', message)`. The vocabulary is lowercase letters
only, so both tokenize messages alike. The two rank differently (BM25 against ts_rank), so
the answers are cross-checked as sets: both engines must count the same matching rows, and
every row Creek returns must match in PostgreSQL too.
"""
import random
import statistics

import duckdb

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "be", "da", "fe", "gu", "ho",
             "ji", "pe", "qua", "ri", "so", "tu", "we", "xe", "yo", "zu", "an", "el", "or"]
VOCABULARY_SIZE = 20_000


def vocabulary(seed):
    """Distinct pronounceable words; rank 0 is the most frequent in the messages."""
    rng = random.Random(seed)
    words, seen = [], set()
    while len(words) < VOCABULARY_SIZE:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def generate_csv(path, rows, seed):
    """Writes `rows` log rows to `path` (CSV, no header): id, ts, level, service, host, message."""
    words = vocabulary(seed)
    con = duckdb.connect()
    con.execute("CREATE TABLE ranked AS SELECT ?::VARCHAR[] AS words", [words])
    # Word ranks follow Zipf's law (exponent about 1): rank = floor(n^u) - 1 for uniform u.
    con.execute(f"""
        COPY (
          SELECT i AS id,
                 TIMESTAMP '2026-01-01' + to_seconds(i * 7 % 2592000) AS ts,
                 CASE WHEN hash(i, 1) % 100 < 70 THEN 'info' WHEN hash(i, 1) % 100 < 90 THEN 'warn'
                      WHEN hash(i, 1) % 100 < 98 THEN 'error' ELSE 'debug' END AS level,
                 'service-' || (hash(i, 2) % 20) AS service,
                 'host-' || (hash(i, 3) % 50) AS host,
                 array_to_string(list_transform(
                     range(10 + (hash(i, 4) % 31)::INTEGER),
                     lambda j: words[1 + least({VOCABULARY_SIZE - 1},
                                floor(pow({VOCABULARY_SIZE}, (hash(i, 5 + j) % 1000000) / 1000000.0))::INTEGER - 1)]),
                   ' ') AS message
          FROM ranked, range({rows}) r(i)
        ) TO '{path}' (FORMAT csv, HEADER false)""")
    con.close()
    return words


def queries(words):
    """(label, Creek MATCH clause, PostgreSQL tsquery, extra filter)."""
    w = words
    return [
        ("1 word", f"MATCH(message, '{w[40]}')", f"to_tsquery('simple', '{w[40]}')", ""),
        ("2 words", f"MATCH(message, '{w[9]} {w[150]}')",
         f"to_tsquery('simple', '{w[9]} | {w[150]}')", ""),
        ("3 words", f"MATCH(message, '{w[25]} {w[400]} {w[3000]}')",
         f"to_tsquery('simple', '{w[25]} | {w[400]} | {w[3000]}')", ""),
        ("phrase", f"MATCH(message, '{w[0]} {w[1]}') USING phrase",
         f"phraseto_tsquery('simple', '{w[0]} {w[1]}')", ""),
        ("2 words AND level = 'error'", f"MATCH(message, '{w[9]} {w[150]}')",
         f"to_tsquery('simple', '{w[9]} | {w[150]}')", " AND level = 'error'"),
    ]


def load(args, rows, csv, creek, postgres, timed):
    """Creates and loads `logs` on both engines; returns (name, {engine: rows/s})."""
    creek.query("CREATE TABLE logs (id BIGINT PRIMARY KEY, ts TIMESTAMP, level TEXT, "
                "service TEXT, host TEXT, message TEXT INDEX USING FULLTEXT "
                "WITH (analyzer = 'standard'))", args.timeout)

    def creek_copy():
        creek.copy_file("logs", csv)
        creek.query("REFRESH TABLE logs", 3600)
    creek_seconds, _ = timed(creek_copy)
    postgres.query("CREATE TABLE logs (id BIGINT PRIMARY KEY, ts TIMESTAMP, level TEXT, "
                   "service TEXT, host TEXT, message TEXT, tsv tsvector GENERATED ALWAYS AS "
                   "(to_tsvector('simple', message)) STORED)", args.timeout)

    def pg_copy():
        postgres.copy_file("logs", csv)
        postgres.query("CREATE INDEX logs_tsv ON logs USING gin (tsv)", 3600)
    pg_seconds, _ = timed(pg_copy)
    postgres.query("VACUUM ANALYZE logs", 3600)
    for client in (creek, postgres):
        count = client.query("SELECT count(*) FROM logs", args.timeout)[0][0]
        if count != rows:
            raise SystemExit(f"{client.name} holds {count} logs rows after the load, not {rows}")
    return ("full text: COPY logs (FULLTEXT index / GIN index built), rows/s",
            {"Creek": rows / creek_seconds, "PostgreSQL": rows / pg_seconds})


def run(args, rows, csv, creek, postgres, timed, query_failed):
    """Loads `logs` and times the queries; returns (ingest row, query rows) in the shape
    bench.report takes."""
    words = vocabulary(args.seed)
    ingest_row = load(args, rows, csv, creek, postgres, timed)
    results = []
    for label, match, tsquery, extra in queries(words):
        creek_sql = (f"SELECT id FROM logs WHERE {match}{extra} "
                     f"ORDER BY _score DESC LIMIT 10")
        pg_sql = (f"SELECT id FROM logs, {tsquery} q WHERE tsv @@ q{extra} "
                  f"ORDER BY ts_rank(tsv, q) DESC LIMIT 10")
        row = {}
        times = {"Creek": [], "PostgreSQL": []}
        answers, failed = {}, {}
        for run_number in range(args.warmup + args.runs):
            for name, client, sql in (("Creek", creek, creek_sql), ("PostgreSQL", postgres, pg_sql)):
                if name in failed:
                    continue
                try:
                    seconds, got = timed(lambda: client.query(sql, args.timeout))
                except query_failed as e:
                    failed[name] = str(e)
                    continue
                answers[name] = [r[0] for r in got]
                if run_number >= args.warmup:
                    times[name].append(seconds)
        why = None if failed else cross_check(args, creek, postgres, match, tsquery, extra,
                                              answers["Creek"], query_failed)
        for name in ("Creek", "PostgreSQL"):
            if name in failed:
                row[name] = ("FAILED", failed[name])
            elif why and name == "Creek":
                row[name] = ("WRONG", why)
            else:
                row[name] = ("ok", statistics.median(times[name]))
        results.append((f"full text: top 10 by relevance, {label}", row))
    return ingest_row, results


def cross_check(args, creek, postgres, match, tsquery, extra, creek_top, query_failed):
    """Why Creek's answer is wrong, or None: the matching rows must be as many as in
    PostgreSQL, and Creek's top rows must match there too."""
    try:
        creek_count = creek.query(f"SELECT count(*) FROM logs WHERE {match}{extra}",
                                  args.timeout)[0][0]
        pg_count = postgres.query(f"SELECT count(*) FROM logs, {tsquery} q WHERE tsv @@ q{extra}",
                                  args.timeout)[0][0]
    except query_failed as e:
        return f"counting the matches failed: {e}"
    if creek_count != pg_count:
        return f"{creek_count} matching rows, PostgreSQL counts {pg_count}"
    if len(creek_top) != min(10, pg_count):
        return f"{len(creek_top)} rows returned of {pg_count} matches"
    if creek_top:
        ids = ", ".join(str(i) for i in creek_top)
        found = postgres.query(f"SELECT count(*) FROM logs, {tsquery} q "
                               f"WHERE tsv @@ q{extra} AND id IN ({ids})", args.timeout)[0][0]
        if found != len(creek_top):
            return f"{len(creek_top) - found} of Creek's top rows do not match in PostgreSQL"
    return None
