"""ClickBench's `hits` table and its 43 queries, as the benchmark runs them on every engine.

The schema and the query texts are ClickBench's PostgreSQL versions, unchanged, so figures
can be read next to published ClickBench results. Each query also carries what the answer
checker needs to know about its ORDER BY: which output columns form the sort key (`key`), so
rows that tie on the key may legitimately come back in a different order, or, at a LIMIT
boundary, be different rows. A query without a usable key in its output is compared as a
multiset of rows.
"""
from dataclasses import dataclass, field

# (column, PostgreSQL type) in ClickBench's order. 105 columns.
SCHEMA = [
    ("WatchID", "BIGINT"), ("JavaEnable", "SMALLINT"), ("Title", "TEXT"),
    ("GoodEvent", "SMALLINT"), ("EventTime", "TIMESTAMP"), ("EventDate", "DATE"),
    ("CounterID", "INTEGER"), ("ClientIP", "INTEGER"), ("RegionID", "INTEGER"),
    ("UserID", "BIGINT"), ("CounterClass", "SMALLINT"), ("OS", "SMALLINT"),
    ("UserAgent", "SMALLINT"), ("URL", "TEXT"), ("Referer", "TEXT"), ("IsRefresh", "SMALLINT"),
    ("RefererCategoryID", "SMALLINT"), ("RefererRegionID", "INTEGER"),
    ("URLCategoryID", "SMALLINT"), ("URLRegionID", "INTEGER"), ("ResolutionWidth", "SMALLINT"),
    ("ResolutionHeight", "SMALLINT"), ("ResolutionDepth", "SMALLINT"), ("FlashMajor", "SMALLINT"),
    ("FlashMinor", "SMALLINT"), ("FlashMinor2", "TEXT"), ("NetMajor", "SMALLINT"),
    ("NetMinor", "SMALLINT"), ("UserAgentMajor", "SMALLINT"), ("UserAgentMinor", "VARCHAR(255)"),
    ("CookieEnable", "SMALLINT"), ("JavascriptEnable", "SMALLINT"), ("IsMobile", "SMALLINT"),
    ("MobilePhone", "SMALLINT"), ("MobilePhoneModel", "TEXT"), ("Params", "TEXT"),
    ("IPNetworkID", "INTEGER"), ("TraficSourceID", "SMALLINT"), ("SearchEngineID", "SMALLINT"),
    ("SearchPhrase", "TEXT"), ("AdvEngineID", "SMALLINT"), ("IsArtifical", "SMALLINT"),
    ("WindowClientWidth", "SMALLINT"), ("WindowClientHeight", "SMALLINT"),
    ("ClientTimeZone", "SMALLINT"), ("ClientEventTime", "TIMESTAMP"),
    ("SilverlightVersion1", "SMALLINT"), ("SilverlightVersion2", "SMALLINT"),
    ("SilverlightVersion3", "INTEGER"), ("SilverlightVersion4", "SMALLINT"),
    ("PageCharset", "TEXT"), ("CodeVersion", "INTEGER"), ("IsLink", "SMALLINT"),
    ("IsDownload", "SMALLINT"), ("IsNotBounce", "SMALLINT"), ("FUniqID", "BIGINT"),
    ("OriginalURL", "TEXT"), ("HID", "INTEGER"), ("IsOldCounter", "SMALLINT"),
    ("IsEvent", "SMALLINT"), ("IsParameter", "SMALLINT"), ("DontCountHits", "SMALLINT"),
    ("WithHash", "SMALLINT"), ("HitColor", "CHAR"), ("LocalEventTime", "TIMESTAMP"),
    ("Age", "SMALLINT"), ("Sex", "SMALLINT"), ("Income", "SMALLINT"), ("Interests", "SMALLINT"),
    ("Robotness", "SMALLINT"), ("RemoteIP", "INTEGER"), ("WindowName", "INTEGER"),
    ("OpenerName", "INTEGER"), ("HistoryLength", "SMALLINT"), ("BrowserLanguage", "TEXT"),
    ("BrowserCountry", "TEXT"), ("SocialNetwork", "TEXT"), ("SocialAction", "TEXT"),
    ("HTTPError", "SMALLINT"), ("SendTiming", "INTEGER"), ("DNSTiming", "INTEGER"),
    ("ConnectTiming", "INTEGER"), ("ResponseStartTiming", "INTEGER"),
    ("ResponseEndTiming", "INTEGER"), ("FetchTiming", "INTEGER"),
    ("SocialSourceNetworkID", "SMALLINT"), ("SocialSourcePage", "TEXT"), ("ParamPrice", "BIGINT"),
    ("ParamOrderID", "TEXT"), ("ParamCurrency", "TEXT"), ("ParamCurrencyID", "SMALLINT"),
    ("OpenstatServiceName", "TEXT"), ("OpenstatCampaignID", "TEXT"), ("OpenstatAdID", "TEXT"),
    ("OpenstatSourceID", "TEXT"), ("UTMSource", "TEXT"), ("UTMMedium", "TEXT"),
    ("UTMCampaign", "TEXT"), ("UTMContent", "TEXT"), ("UTMTerm", "TEXT"), ("FromTag", "TEXT"),
    ("HasGCLID", "SMALLINT"), ("RefererHash", "BIGINT"), ("URLHash", "BIGINT"), ("CLID", "INTEGER"),
]
assert len(SCHEMA) == 105
PRIMARY_KEY = ["CounterID", "EventDate", "UserID", "EventTime", "WatchID"]


def create_table(name="hits", index_off=False):
    """The `hits` DDL; `index_off` declares it as PostgreSQL holds it (Creek only): the key
    columns indexed, every other column `INDEX OFF` (columnar only)."""
    def column(c, t):
        off = " INDEX OFF" if index_off and c not in PRIMARY_KEY else ""
        return f"{c} {t} NOT NULL{off}"
    columns = ",\n    ".join(column(c, t) for c, t in SCHEMA)
    return f"CREATE TABLE {name}\n(\n    {columns},\n    PRIMARY KEY ({', '.join(PRIMARY_KEY)})\n)"


@dataclass
class Query:
    sql: str
    # Output column positions that make up the ORDER BY key; None: the order is not checkable
    # from the output (or there is no ORDER BY), so answers are compared as multisets.
    key: list = field(default=None)
    # Set for GROUP BY ... LIMIT without ORDER BY: any n groups are a right answer, so each
    # returned group is checked against the reference engine instead.
    any_groups: bool = False


def _sum_resolution():
    return "SELECT " + ", ".join(
        ["SUM(ResolutionWidth)"] + [f"SUM(ResolutionWidth + {i})" for i in range(1, 90)]
    ) + " FROM hits;"


_C62 = "CounterID = 62 AND EventDate >= '2013-07-01' AND EventDate <= '2013-07-31'"

QUERIES = [
    Query("SELECT COUNT(*) FROM hits;"),
    Query("SELECT COUNT(*) FROM hits WHERE AdvEngineID <> 0;"),
    Query("SELECT SUM(AdvEngineID), COUNT(*), AVG(ResolutionWidth) FROM hits;"),
    Query("SELECT AVG(UserID) FROM hits;"),
    Query("SELECT COUNT(DISTINCT UserID) FROM hits;"),
    Query("SELECT COUNT(DISTINCT SearchPhrase) FROM hits;"),
    Query("SELECT MIN(EventDate), MAX(EventDate) FROM hits;"),
    Query("SELECT AdvEngineID, COUNT(*) FROM hits WHERE AdvEngineID <> 0 GROUP BY AdvEngineID "
          "ORDER BY COUNT(*) DESC;", key=[1]),
    Query("SELECT RegionID, COUNT(DISTINCT UserID) AS u FROM hits GROUP BY RegionID "
          "ORDER BY u DESC LIMIT 10;", key=[1]),
    Query("SELECT RegionID, SUM(AdvEngineID), COUNT(*) AS c, AVG(ResolutionWidth), "
          "COUNT(DISTINCT UserID) FROM hits GROUP BY RegionID ORDER BY c DESC LIMIT 10;", key=[2]),
    Query("SELECT MobilePhoneModel, COUNT(DISTINCT UserID) AS u FROM hits "
          "WHERE MobilePhoneModel <> '' GROUP BY MobilePhoneModel ORDER BY u DESC LIMIT 10;",
          key=[1]),
    Query("SELECT MobilePhone, MobilePhoneModel, COUNT(DISTINCT UserID) AS u FROM hits "
          "WHERE MobilePhoneModel <> '' GROUP BY MobilePhone, MobilePhoneModel "
          "ORDER BY u DESC LIMIT 10;", key=[2]),
    Query("SELECT SearchPhrase, COUNT(*) AS c FROM hits WHERE SearchPhrase <> '' "
          "GROUP BY SearchPhrase ORDER BY c DESC LIMIT 10;", key=[1]),
    Query("SELECT SearchPhrase, COUNT(DISTINCT UserID) AS u FROM hits WHERE SearchPhrase <> '' "
          "GROUP BY SearchPhrase ORDER BY u DESC LIMIT 10;", key=[1]),
    Query("SELECT SearchEngineID, SearchPhrase, COUNT(*) AS c FROM hits WHERE SearchPhrase <> '' "
          "GROUP BY SearchEngineID, SearchPhrase ORDER BY c DESC LIMIT 10;", key=[2]),
    Query("SELECT UserID, COUNT(*) FROM hits GROUP BY UserID ORDER BY COUNT(*) DESC LIMIT 10;",
          key=[1]),
    Query("SELECT UserID, SearchPhrase, COUNT(*) FROM hits GROUP BY UserID, SearchPhrase "
          "ORDER BY COUNT(*) DESC LIMIT 10;", key=[2]),
    Query("SELECT UserID, SearchPhrase, COUNT(*) FROM hits GROUP BY UserID, SearchPhrase "
          "LIMIT 10;", any_groups=True),
    Query("SELECT UserID, extract(minute FROM EventTime) AS m, SearchPhrase, COUNT(*) FROM hits "
          "GROUP BY UserID, m, SearchPhrase ORDER BY COUNT(*) DESC LIMIT 10;", key=[3]),
    Query("SELECT UserID FROM hits WHERE UserID = 435090932899640449;"),
    Query("SELECT COUNT(*) FROM hits WHERE URL LIKE '%google%';"),
    Query("SELECT SearchPhrase, MIN(URL), COUNT(*) AS c FROM hits WHERE URL LIKE '%google%' "
          "AND SearchPhrase <> '' GROUP BY SearchPhrase ORDER BY c DESC LIMIT 10;", key=[2]),
    Query("SELECT SearchPhrase, MIN(URL), MIN(Title), COUNT(*) AS c, COUNT(DISTINCT UserID) "
          "FROM hits WHERE Title LIKE '%Google%' AND URL NOT LIKE '%.google.%' "
          "AND SearchPhrase <> '' GROUP BY SearchPhrase ORDER BY c DESC LIMIT 10;", key=[3]),
    Query("SELECT * FROM hits WHERE URL LIKE '%google%' ORDER BY EventTime LIMIT 10;", key=[4]),
    Query("SELECT SearchPhrase FROM hits WHERE SearchPhrase <> '' ORDER BY EventTime LIMIT 10;"),
    Query("SELECT SearchPhrase FROM hits WHERE SearchPhrase <> '' ORDER BY SearchPhrase "
          "LIMIT 10;", key=[0]),
    Query("SELECT SearchPhrase FROM hits WHERE SearchPhrase <> '' "
          "ORDER BY EventTime, SearchPhrase LIMIT 10;"),
    Query("SELECT CounterID, AVG(length(URL)) AS l, COUNT(*) AS c FROM hits WHERE URL <> '' "
          "GROUP BY CounterID HAVING COUNT(*) > 100000 ORDER BY l DESC LIMIT 25;", key=[1]),
    Query("SELECT REGEXP_REPLACE(Referer, '^https?://(?:www\\.)?([^/]+)/.*$', '\\1') AS k, "
          "AVG(length(Referer)) AS l, COUNT(*) AS c, MIN(Referer) FROM hits WHERE Referer <> '' "
          "GROUP BY k HAVING COUNT(*) > 100000 ORDER BY l DESC LIMIT 25;", key=[1]),
    Query(_sum_resolution()),
    Query("SELECT SearchEngineID, ClientIP, COUNT(*) AS c, SUM(IsRefresh), AVG(ResolutionWidth) "
          "FROM hits WHERE SearchPhrase <> '' GROUP BY SearchEngineID, ClientIP "
          "ORDER BY c DESC LIMIT 10;", key=[2]),
    Query("SELECT WatchID, ClientIP, COUNT(*) AS c, SUM(IsRefresh), AVG(ResolutionWidth) "
          "FROM hits WHERE SearchPhrase <> '' GROUP BY WatchID, ClientIP "
          "ORDER BY c DESC LIMIT 10;", key=[2]),
    Query("SELECT WatchID, ClientIP, COUNT(*) AS c, SUM(IsRefresh), AVG(ResolutionWidth) "
          "FROM hits GROUP BY WatchID, ClientIP ORDER BY c DESC LIMIT 10;", key=[2]),
    Query("SELECT URL, COUNT(*) AS c FROM hits GROUP BY URL ORDER BY c DESC LIMIT 10;", key=[1]),
    Query("SELECT 1, URL, COUNT(*) AS c FROM hits GROUP BY 1, URL ORDER BY c DESC LIMIT 10;",
          key=[2]),
    Query("SELECT ClientIP, ClientIP - 1, ClientIP - 2, ClientIP - 3, COUNT(*) AS c FROM hits "
          "GROUP BY ClientIP, ClientIP - 1, ClientIP - 2, ClientIP - 3 "
          "ORDER BY c DESC LIMIT 10;", key=[4]),
    Query(f"SELECT URL, COUNT(*) AS PageViews FROM hits WHERE {_C62} AND DontCountHits = 0 "
          "AND IsRefresh = 0 AND URL <> '' GROUP BY URL ORDER BY PageViews DESC LIMIT 10;",
          key=[1]),
    Query(f"SELECT Title, COUNT(*) AS PageViews FROM hits WHERE {_C62} AND DontCountHits = 0 "
          "AND IsRefresh = 0 AND Title <> '' GROUP BY Title ORDER BY PageViews DESC LIMIT 10;",
          key=[1]),
    Query(f"SELECT URL, COUNT(*) AS PageViews FROM hits WHERE {_C62} AND IsRefresh = 0 "
          "AND IsLink <> 0 AND IsDownload = 0 GROUP BY URL ORDER BY PageViews DESC "
          "LIMIT 10 OFFSET 1000;", key=[1]),
    Query("SELECT TraficSourceID, SearchEngineID, AdvEngineID, CASE WHEN (SearchEngineID = 0 "
          "AND AdvEngineID = 0) THEN Referer ELSE '' END AS Src, URL AS Dst, COUNT(*) AS PageViews "
          f"FROM hits WHERE {_C62} AND IsRefresh = 0 GROUP BY TraficSourceID, SearchEngineID, "
          "AdvEngineID, Src, Dst ORDER BY PageViews DESC LIMIT 10 OFFSET 1000;", key=[5]),
    Query(f"SELECT URLHash, EventDate, COUNT(*) AS PageViews FROM hits WHERE {_C62} "
          "AND IsRefresh = 0 AND TraficSourceID IN (-1, 6) AND RefererHash = 3594120000172545465 "
          "GROUP BY URLHash, EventDate ORDER BY PageViews DESC LIMIT 10 OFFSET 100;", key=[2]),
    Query("SELECT WindowClientWidth, WindowClientHeight, COUNT(*) AS PageViews FROM hits "
          f"WHERE {_C62} AND IsRefresh = 0 AND DontCountHits = 0 "
          "AND URLHash = 2868770270353813622 GROUP BY WindowClientWidth, WindowClientHeight "
          "ORDER BY PageViews DESC LIMIT 10 OFFSET 10000;", key=[2]),
    Query("SELECT DATE_TRUNC('minute', EventTime) AS M, COUNT(*) AS PageViews FROM hits "
          "WHERE CounterID = 62 AND EventDate >= '2013-07-14' AND EventDate <= '2013-07-15' "
          "AND IsRefresh = 0 AND DontCountHits = 0 GROUP BY DATE_TRUNC('minute', EventTime) "
          "ORDER BY DATE_TRUNC('minute', EventTime) LIMIT 10 OFFSET 1000;", key=[0]),
]
assert len(QUERIES) == 43
