"""Deterministic synthetic `hits` rows, written as CSV by DuckDB.

Every value is a function of the row number and a fixed seed through DuckDB's `hash()` (the
DuckDB version is pinned in requirements.txt), so the same scale always gives byte-identical
files, whatever the thread count. The columns the 43 queries touch get realistic
cardinalities and skew: a few counters (CounterID 62 about 12 % of rows, as the queries
expect), power-law users, regions, URLs and referer domains, a search phrase in one row of
five, a phone model in one of eight. The rest stay near-constant, as they are in the real
dataset. Nothing here reads the real ClickBench data.
"""
import random

from clickbench import SCHEMA

_SYLLABLES = ["ka", "ro", "mi", "te", "su", "na", "lo", "vi", "de", "pa", "zo", "ri", "be",
              "to", "ma", "ne", "ku", "sa", "li", "go", "ha", "fe", "ju", "xo", "ce", "wi",
              "yo", "pe", "du", "ti"]
_PHONES = ["iPad", "iPhone", "GT-I9300", "GT-I9500", "HTC One", "Lumia 920", "Nexus 4",
           "Xperia Z", "GT-N7100", "MI 2", "GT-S5830", "A500", "Galaxy Tab", "One X", "Desire",
           "Optimus G", "Kindle", "Note 3", "Moto X", "Xperia S", "Ascend P6", "GT-P5100"]
_SITES = ["google.com", "google.ru", "maps.google.com", "mail.ru", "vk.com", "avito.ru",
          "auto.ru", "kinopoisk.ru", "livejournal.com", "yandex.ru", "news.yandex.ru",
          "market.yandex.ru", "rambler.ru", "odnoklassniki.ru", "wikipedia.org", "youtube.com",
          "facebook.com", "twitter.com", "lenta.ru", "rbc.ru"]
_PAGES = ["index", "search", "catalog", "news", "item", "cart", "profile", "photo", "video",
          "forum", "blog", "login", "help", "list", "view", "edit", "map", "compare"]


def _vocabulary(seed, size=5000):
    rng = random.Random(seed)
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def _list(values):
    def literal(v):
        return str(v) if isinstance(v, int) else "'" + v.replace("'", "''") + "'"
    return "[" + ", ".join(literal(v) for v in values) + "]"


def _key(column, seed, k):
    """One integer per (row, seed, draw): DuckDB's single-value hash mixes well, while its
    multi-argument hash leaves neighbouring rows correlated."""
    return f"({column} * 1024 + {k} + {seed} * 1099511627776)"


class _Gen:
    """Builds the SQL expressions; every `u(k)` is an independent uniform draw for the row."""

    def __init__(self, seed):
        self.seed = seed

    def u(self, k):
        return f"((hash({_key('i', self.seed, k)}) >> 11)::DOUBLE / 9007199254740992.0)"

    def zipf(self, k, n, s):
        """An integer in [0, n), skewed towards 0 (power law with exponent s)."""
        return f"least({n - 1}, floor({n} * pow({self.u(k)}, {s})))::BIGINT"

    def pick(self, k, values, s=1.0):
        return f"({_list(values)})[1 + {self.zipf(k, len(values), s)}]"

    def word(self, k):
        return f"vocab[1 + {self.zipf(k, 5000, 3.0)}]"


def generate_csv(path, rows, seed=42):
    """Writes `rows` hits rows to `path` (CSV, no header, ClickBench column order)."""
    import duckdb

    g = _Gen(seed)
    u, zipf, pick, word = g.u, g.zipf, g.pick, g.word
    sites = _SITES + [f"site{n}.ru" for n in range(280)]
    users = max(rows // 8, 10)
    base = f"""
    WITH v AS (SELECT {_list(_vocabulary(seed))} AS vocab),
    raw AS (
      SELECT i,
        {zipf(1, users, 2.0)} AS user_idx,
        CASE WHEN {u(2)} < 0.12 THEN 62 ELSE 1 + {zipf(3, 20000, 2.5)} END AS counter,
        TIMESTAMP '2013-07-01 00:00:00' + to_seconds(floor({u(4)} * 2678400)::BIGINT) AS t,
        CASE WHEN {u(7)} < 0.8 THEN '' ELSE {word(8)}
          || CASE WHEN {u(9)} < 0.6 THEN ' ' || {word(10)} ELSE '' END
          || CASE WHEN {u(11)} < 0.3 THEN ' ' || {word(12)} ELSE '' END END AS phrase,
        CASE WHEN {u(16)} < 0.88 THEN '' ELSE {pick(17, _PHONES, 2.0)} END AS phone_model,
        'http://' || {pick(18, sites, 3.0)} || '/' || {pick(19, _PAGES, 1.5)} || '/'
          || {zipf(20, 200000, 3.0)}::VARCHAR
          || CASE WHEN {u(21)} < 0.3 THEN '?q=' || {word(22)} ELSE '' END AS url,
        CASE WHEN {u(23)} < 0.35 THEN '' ELSE 'http://'
          || CASE WHEN {u(24)} < 0.3 THEN 'www.' ELSE '' END || {pick(25, sites, 4.0)} || '/'
          || {pick(26, _PAGES, 1.5)} || '/' || {zipf(27, 50000, 2.0)}::VARCHAR END AS referer,
        CASE WHEN {u(28)} < 0.1 THEN '' ELSE
          CASE WHEN {u(29)} < 0.03 THEN 'Google ' ELSE '' END
          || {word(30)} || ' ' || {word(31)} || ' - ' || {pick(32, _SITES, 1.5)} END AS title,
        {u(33)} AS r_hash
      FROM v, range({rows}) r(i)
    )
    SELECT
      (hash({_key('i', seed, 999)}) >> 1)::BIGINT AS WatchID,
      (CASE WHEN {u(40)} < 0.9 THEN 1 ELSE 0 END)::SMALLINT AS JavaEnable,
      title AS Title,
      1::SMALLINT AS GoodEvent,
      t AS EventTime,
      t::DATE AS EventDate,
      counter::INTEGER AS CounterID,
      ((hash({_key(zipf(5, max(rows // 4, 10), 1.5), seed, 5)}) % 4294967296)::BIGINT
        - 2147483648)::INTEGER AS ClientIP,
      (1 + {zipf(6, 10000, 3.0)})::INTEGER AS RegionID,
      CASE WHEN user_idx = 3 THEN 435090932899640449
        ELSE (hash({_key('user_idx', seed, 77)}) >> 1)::BIGINT END AS UserID,
      {zipf(41, 5, 1.0)}::SMALLINT AS CounterClass,
      (1 + {zipf(42, 90, 2.0)})::SMALLINT AS OS,
      (1 + {zipf(43, 60, 2.0)})::SMALLINT AS UserAgent,
      url AS URL,
      referer AS Referer,
      (CASE WHEN {u(44)} < 0.1 THEN 1 ELSE 0 END)::SMALLINT AS IsRefresh,
      {zipf(45, 20, 2.0)}::SMALLINT AS RefererCategoryID,
      {zipf(46, 10000, 3.0)}::INTEGER AS RefererRegionID,
      {zipf(47, 20, 2.0)}::SMALLINT AS URLCategoryID,
      {zipf(48, 10000, 3.0)}::INTEGER AS URLRegionID,
      {pick(49, [1920, 1366, 1280, 1440, 1600, 1024, 1536, 360, 375, 414, 768, 2560], 2.0)}
        ::SMALLINT AS ResolutionWidth,
      {pick(50, [1080, 768, 1024, 900, 800, 640, 864, 720, 812, 1440], 2.0)}
        ::SMALLINT AS ResolutionHeight,
      {pick(51, [24, 32, 16], 2.0)}::SMALLINT AS ResolutionDepth,
      {zipf(52, 12, 2.0)}::SMALLINT AS FlashMajor,
      {zipf(53, 10, 2.0)}::SMALLINT AS FlashMinor,
      {pick(54, ['', '0', '1', '2', '159', '181'], 2.0)} AS FlashMinor2,
      {zipf(55, 4, 2.0)}::SMALLINT AS NetMajor,
      {zipf(56, 10, 2.0)}::SMALLINT AS NetMinor,
      {zipf(57, 40, 2.0)}::SMALLINT AS UserAgentMajor,
      {pick(58, ['0', '1', '2', 'D0', 'F4', '10'], 2.0)} AS UserAgentMinor,
      1::SMALLINT AS CookieEnable,
      (CASE WHEN {u(59)} < 0.97 THEN 1 ELSE 0 END)::SMALLINT AS JavascriptEnable,
      (CASE WHEN phone_model = '' THEN 0 ELSE 1 END)::SMALLINT AS IsMobile,
      (CASE WHEN phone_model = '' THEN 0 ELSE 1 + {zipf(60, 20, 1.5)} END)::SMALLINT
        AS MobilePhone,
      phone_model AS MobilePhoneModel,
      '' AS Params,
      ({zipf(61, 100000, 2.0)})::INTEGER AS IPNetworkID,
      {pick(62, [0, 1, -1, 2, 3, 6, 4, 5, 7, 8, 9], 1.5)}::SMALLINT AS TraficSourceID,
      (CASE WHEN phrase = '' THEN 0 ELSE 1 + {zipf(63, 30, 2.0)} END)::SMALLINT
        AS SearchEngineID,
      phrase AS SearchPhrase,
      (CASE WHEN {u(14)} < 0.95 THEN 0 ELSE 1 + {zipf(15, 60, 2.0)} END)::SMALLINT
        AS AdvEngineID,
      0::SMALLINT AS IsArtifical,
      {pick(64, [0, 1903, 1349, 1263, 1425, 1007, 360, 980], 2.0)}::SMALLINT
        AS WindowClientWidth,
      {pick(65, [0, 955, 646, 917, 780, 1006, 559, 640], 2.0)}::SMALLINT AS WindowClientHeight,
      {pick(66, [4, 3, -1, 2, 6, 5, 1, 0], 2.0)}::SMALLINT AS ClientTimeZone,
      t - to_seconds({zipf(67, 3600, 3.0)}) AS ClientEventTime,
      {zipf(68, 6, 2.0)}::SMALLINT AS SilverlightVersion1,
      {zipf(69, 3, 2.0)}::SMALLINT AS SilverlightVersion2,
      {zipf(70, 60000, 3.0)}::INTEGER AS SilverlightVersion3,
      {zipf(71, 3, 2.0)}::SMALLINT AS SilverlightVersion4,
      {pick(72, ['utf-8', 'windows-1251', 'koi8-r'], 2.0)} AS PageCharset,
      {zipf(73, 1000, 2.0)}::INTEGER AS CodeVersion,
      (CASE WHEN {u(74)} < 0.05 THEN 1 ELSE 0 END)::SMALLINT AS IsLink,
      (CASE WHEN {u(75)} < 0.01 THEN 1 ELSE 0 END)::SMALLINT AS IsDownload,
      (CASE WHEN {u(76)} < 0.5 THEN 1 ELSE 0 END)::SMALLINT AS IsNotBounce,
      (CASE WHEN {u(77)} < 0.6 THEN 0 ELSE (hash({_key('i', seed, 78)}) >> 1)::BIGINT END)
        AS FUniqID,
      '' AS OriginalURL,
      (hash({_key('i', seed, 79)}) % 2147483647)::INTEGER AS HID,
      0::SMALLINT AS IsOldCounter,
      0::SMALLINT AS IsEvent,
      0::SMALLINT AS IsParameter,
      (CASE WHEN {u(80)} < 0.05 THEN 1 ELSE 0 END)::SMALLINT AS DontCountHits,
      0::SMALLINT AS WithHash,
      {pick(81, ['5', 'F', 'E', 'D', 'B'], 2.0)} AS HitColor,
      t + to_seconds(3600 * {zipf(82, 12, 1.5)}) AS LocalEventTime,
      {zipf(83, 6, 1.0)}::SMALLINT AS Age,
      {zipf(84, 3, 1.0)}::SMALLINT AS Sex,
      {zipf(85, 5, 1.0)}::SMALLINT AS Income,
      {zipf(86, 1000, 2.0)}::SMALLINT AS Interests,
      {zipf(87, 5, 2.0)}::SMALLINT AS Robotness,
      ((hash({_key('i', seed, 88)}) % 4294967296)::BIGINT - 2147483648)::INTEGER AS RemoteIP,
      {zipf(89, 100, 3.0)}::INTEGER AS WindowName,
      {zipf(90, 100, 3.0)}::INTEGER AS OpenerName,
      {zipf(91, 30, 2.0)}::SMALLINT AS HistoryLength,
      {pick(92, ['ru', 'en', 'uk', 'de', 'tr'], 2.0)} AS BrowserLanguage,
      {pick(93, ['ru', 'ua', 'by', 'kz', 'de', 'us'], 2.0)} AS BrowserCountry,
      '' AS SocialNetwork,
      '' AS SocialAction,
      0::SMALLINT AS HTTPError,
      {zipf(94, 5000, 3.0)}::INTEGER AS SendTiming,
      {zipf(95, 500, 3.0)}::INTEGER AS DNSTiming,
      {zipf(96, 1000, 3.0)}::INTEGER AS ConnectTiming,
      {zipf(97, 5000, 3.0)}::INTEGER AS ResponseStartTiming,
      {zipf(98, 8000, 3.0)}::INTEGER AS ResponseEndTiming,
      {zipf(99, 10000, 3.0)}::INTEGER AS FetchTiming,
      0::SMALLINT AS SocialSourceNetworkID,
      '' AS SocialSourcePage,
      0::BIGINT AS ParamPrice,
      '' AS ParamOrderID,
      {pick(100, ['', 'RUB', 'USD', 'EUR'], 4.0)} AS ParamCurrency,
      0::SMALLINT AS ParamCurrencyID,
      '' AS OpenstatServiceName,
      '' AS OpenstatCampaignID,
      '' AS OpenstatAdID,
      '' AS OpenstatSourceID,
      {pick(101, ['', 'yandex', 'google', 'vk', 'email'], 4.0)} AS UTMSource,
      {pick(102, ['', 'cpc', 'banner', 'organic'], 4.0)} AS UTMMedium,
      '' AS UTMCampaign,
      '' AS UTMContent,
      '' AS UTMTerm,
      '' AS FromTag,
      (CASE WHEN {u(103)} < 0.02 THEN 1 ELSE 0 END)::SMALLINT AS HasGCLID,
      CASE WHEN r_hash < 0.05 THEN 3594120000172545465
        ELSE (hash(referer) >> 1)::BIGINT END AS RefererHash,
      CASE WHEN {u(104)} < 0.01 THEN 2868770270353813622
        ELSE (hash(url) >> 1)::BIGINT END AS URLHash,
      {zipf(105, 100, 4.0)}::INTEGER AS CLID
    FROM raw ORDER BY i
    """
    con = duckdb.connect()
    try:
        con.execute("SET preserve_insertion_order = true")
        con.execute("SET enable_progress_bar = false")
        names = [c for c, _ in SCHEMA]
        con.execute(f"CREATE TEMP VIEW generated AS {base}")
        got = [d[0] for d in con.execute("SELECT * FROM generated LIMIT 0").description]
        if [g.lower() for g in got] != [n.lower() for n in names]:
            raise RuntimeError(f"generator columns differ from the schema: {got}")
        con.execute(f"COPY (SELECT * FROM generated) TO '{path}' (FORMAT csv, HEADER false)")
    finally:
        con.close()
