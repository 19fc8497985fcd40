"""Decides whether two engines gave the same answer to a query.

Values are first brought to one form: numbers compare to 6 significant digits (PostgreSQL
answers AVG in numeric, the others in double), integral numbers as integers whatever their
type, timestamps and dates as ISO text. Then rows are compared in order, except where SQL
leaves the order or the rows open: rows that tie on the ORDER BY key may come in any order,
and the tie group a LIMIT or OFFSET cuts through may hold different rows, as long as every
engine returns the same sort-key values.
"""
import datetime
import decimal
import math
from collections import Counter


def value(v):
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, (float, decimal.Decimal)):
        f = float(v)
        if math.isnan(f) or math.isinf(f):
            return str(f)
        if f == int(f) and abs(f) < 2 ** 53:
            return int(f)
        return float(f"{f:.6g}")
    if isinstance(v, datetime.datetime):
        return v.replace(tzinfo=None).isoformat(sep=" ")
    if isinstance(v, (datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, (list, tuple)):
        return tuple(value(x) for x in v)
    return str(v)


def normalize(rows):
    return [tuple(value(v) for v in row) for row in rows]


def _groups(rows, key):
    """Consecutive runs of rows sharing the key values, as (key, Counter of rows)."""
    groups = []
    for row in rows:
        k = tuple(row[i] for i in key)
        if groups and groups[-1][0] == k:
            groups[-1][1][row] += 1
        else:
            groups.append((k, Counter([row])))
    return groups


def same_answer(expected, got, key, offset=False):
    """None if `got` is a right answer given the reference `expected`, else why not.
    `offset`: the query skips rows, so its first tie group may be cut too."""
    if len(expected) != len(got):
        return f"{len(got)} rows, expected {len(expected)}"
    if expected == got:
        return None
    if key is None:
        if Counter(expected) == Counter(got):
            return None
        return f"rows differ, e.g. got {_first_difference(got, expected)}"
    a, b = _groups(expected, key), _groups(got, key)
    if [k for k, _ in a] != [k for k, _ in b]:
        return f"sort keys differ: got {[k for k, _ in b][:5]}, expected {[k for k, _ in a][:5]}"
    last = len(a) - 1
    for n, ((k, rows_a), (_, rows_b)) in enumerate(zip(a, b)):
        # The last tie group may be cut by LIMIT at different rows, the first by OFFSET.
        if n == last or (n == 0 and offset) or rows_a == rows_b:
            continue
        return f"rows for sort key {k} differ, e.g. got {_first_difference(rows_b, rows_a)}"
    return None


def _first_difference(got, expected):
    extra = Counter(got) - Counter(expected)
    return next(iter(extra), None)
