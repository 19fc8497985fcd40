"""MATCH scores against an independent BM25, computed here from the corpus the test wrote
(k1 = 1.2, b = 0.75, idf = ln(1 + (N - n + 0.5) / (n + 0.5)), as Lucene and tantivy define
it), and a table of several shards scoring exactly as a one-shard table of the same rows."""
import math
import random
import re

import psycopg
import pytest

K1, B = 1.2, 0.75
VOCABULARY = ["apple", "banana", "cherry", "date", "elder", "fig", "grape", "honey", "kiwi",
              "lemon", "mango", "nut", "olive", "pear", "quince", "rasp"]


@pytest.fixture()
def conn(creek):
    with psycopg.connect(creek.dsn, autocommit=True) as connection:
        yield connection


def corpus():
    rng = random.Random(7)
    docs = {}
    for i in range(1, 61):
        # Short documents (at most 30 words): tantivy stores lengths up to 40 exactly.
        words = [rng.choice(VOCABULARY[: 4 + i % 12]) for _ in range(rng.randint(3, 30))]
        docs[i] = " ".join(w.upper() if rng.random() < 0.2 else w for w in words) + "."
    return docs


def tokens(text):
    # The simple analyzer: runs of letters, lowercased.
    return re.findall(r"[a-z]+", text.lower())


def bm25(docs, query):
    analyzed = {i: tokens(text) for i, text in docs.items()}
    n_docs = len(docs)
    avgdl = sum(len(t) for t in analyzed.values()) / n_docs
    scores = {}
    for term in dict.fromkeys(tokens(query)):
        n = sum(1 for t in analyzed.values() if term in t)
        if n == 0:
            continue
        idf = math.log(1 + (n_docs - n + 0.5) / (n + 0.5))
        for i, t in analyzed.items():
            tf = t.count(term)
            if tf:
                norm = tf + K1 * (1 - B + B * len(t) / avgdl)
                scores[i] = scores.get(i, 0.0) + idf * tf * (K1 + 1) / norm
    return scores


def load(conn, name, shards, docs):
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, body TEXT INDEX USING FULLTEXT "
                 f"WITH (analyzer = 'simple')) CLUSTERED INTO {shards} SHARDS "
                 f"WITH (number_of_replicas = 0)")
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {name} VALUES (%s, %s)", list(docs.items()))


@pytest.mark.parametrize("query", ["apple", "banana cherry", "Fig grape honey", "olive pear lemon"])
def test_scores_are_bm25_on_one_shard_and_on_several(conn, query):
    docs = corpus()
    load(conn, "ft_one", 1, docs)
    load(conn, "ft_four", 4, docs)
    expected = bm25(docs, query)
    assert expected, "the query should match something"
    for table in ("ft_one", "ft_four"):
        rows = conn.execute(f"SELECT id, _score FROM {table} WHERE MATCH(body, %s) "
                            f"ORDER BY _score DESC, id", (query,)).fetchall()
        got = dict(rows)
        assert set(got) == set(expected), table
        for i, score in got.items():
            assert score == pytest.approx(expected[i], rel=1e-4), (table, i)
        # A top-k by score alone (each shard collects its k best, skipping blocks of postings
        # that cannot make the cut) has the k best scores.
        top = conn.execute(f"SELECT _score FROM {table} WHERE MATCH(body, %s) "
                           f"ORDER BY _score DESC LIMIT 5", (query,)).fetchall()
        best = sorted(expected.values(), reverse=True)[:5]
        assert [s for (s,) in top] == pytest.approx(best, rel=1e-4), table
        # The order is the independent ranking (ties aside).
        order = [i for i, _ in rows]
        for better, worse in zip(order, order[1:]):
            assert expected[better] >= expected[worse] * (1 - 1e-4), (table, better, worse)


def test_show_create_table_prints_the_indexes(conn):
    conn.execute("DROP TABLE IF EXISTS ft_show")
    conn.execute("CREATE TABLE ft_show (id INTEGER PRIMARY KEY, title TEXT, body TEXT INDEX "
                 "USING FULLTEXT WITH (analyzer = 'english'), INDEX both USING FULLTEXT "
                 "(title, body))")
    text = conn.execute("SHOW CREATE TABLE ft_show").fetchone()[0]
    assert "\"body\" TEXT INDEX USING FULLTEXT WITH (analyzer = 'english')" in text, text
    assert "INDEX \"both\" USING FULLTEXT (\"title\", \"body\") WITH (analyzer = 'standard')" in text, text
    conn.execute("DROP TABLE ft_show")


def test_match_over_http_with_the_crate_client(creek, conn):
    from crate import client as crate_client
    load(conn, "ft_http", 2, corpus())
    conn.execute("REFRESH TABLE ft_http")
    with crate_client.connect(creek.url) as connection:
        cursor = connection.cursor()
        cursor.execute("SELECT id, _score FROM ft_http WHERE MATCH(body, ?) "
                       "ORDER BY _score DESC LIMIT 3", ("apple",))
        rows = cursor.fetchall()
    expected = bm25(corpus(), "apple")
    assert [s for _, s in rows] == pytest.approx(sorted(expected.values(), reverse=True)[:3],
                                                 rel=1e-4)
    # Errors come back as CrateDB error JSON with the SQLSTATE's meaning.
    with crate_client.connect(creek.url) as connection:
        with pytest.raises(crate_client.exceptions.ProgrammingError):
            connection.cursor().execute("SELECT id FROM ft_http WHERE MATCH(body, 'a') OR id = 1")
