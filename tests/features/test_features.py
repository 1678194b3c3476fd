from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from features_data import T0, make_flights, make_planes, make_weather, write_project

from steward.backends.online_redis import RedisOnlineStore
from steward.backends.online_sqlite import SqliteOnlineStore
from steward.data.lake import TableRef
from steward.errors import SpecError, ValidationFailed
from steward.features import build_features, build_training_set, get_online_features, materialize
from steward.workspace import Workspace

LATE_AFTER = timedelta(hours=14)


def test_windowed_aggregates_match_a_naive_computation(ws: Workspace) -> None:
    ts = build_training_set(ws)
    flights = ws.lake.read("silver.flights").to_dicts()
    checked = 0
    for ev in ts.frame.to_dicts():
        t = ev["time_hour"]

        def window(rows: list[dict], days: int, t: datetime = t) -> list[dict]:
            # known at time_hour + 14h; the window [t - days, t) is on the known time: strictly before the event
            return [r for r in rows if t - timedelta(days=days) <= r["time_hour"] + LATE_AFTER < t]

        same_carrier = [r for r in flights if r["carrier"] == ev["carrier"]]
        for days, name in ((1, "carrier_late_1d"), (3, "carrier_late_3d")):
            w = window(same_carrier, days)
            expected = sum(r["arr_delay"] >= 15 for r in w) / len(w) if w else None
            assert ev[name] == (pytest.approx(expected) if expected is not None else None), (ev, name)
        route = window([r for r in flights if (r["origin"], r["dest"]) == (ev["origin"], ev["dest"])], 2)
        assert ev["route_flights_2d"] == len(route)
        assert ev["route_delay_sum_2d"] == pytest.approx(sum(r["arr_delay"] for r in route))
        assert ev["route_late_2d"] == (pytest.approx(sum(r["arr_delay"] >= 15 for r in route) / len(route)) if route else None)
        checked += 1
    assert checked == 300
    # the features are not all empty: the test would be vacuous otherwise
    assert ts.frame["carrier_late_3d"].drop_nulls().len() > 200
    assert ts.frame["route_flights_2d"].max() > 3  # type: ignore[operator]


def test_weather_and_static_tables_join_as_of_the_event(ws: Workspace) -> None:
    ts = build_training_set(ws)
    weather = ws.lake.read("silver.weather")
    for ev in ts.frame.head(80).to_dicts():
        w = weather.filter((pl.col("origin") == ev["origin"]) & (pl.col("time_hour") <= ev["time_hour"])).sort("time_hour")
        last = w.tail(1).to_dicts()
        if last and ev["time_hour"] - last[0]["time_hour"] <= timedelta(hours=3):
            assert ev["temp"] == last[0]["temp"]
        else:
            assert ev["temp"] is None
    ages = dict(zip(ts.frame["tailnum"].to_list(), ts.frame["plane_age"].to_list(), strict=True))
    assert ages.get("N1") == 13 and ages.get("N2") == 3 and ages.get("N3") is None and ages.get(None) is None
    assert ages.get("N4") is None  # unknown plane
    assert ts.label == "late" and set(ts.frame["late"].unique().to_list()) == {0, 1}
    assert ts.categorical == ["carrier", "origin", "dest"]
    assert ts.feature_names[:6] == ["carrier", "origin", "dest", "hour", "month", "distance"]


def test_poisoned_future_never_leaks(ws: Workspace) -> None:
    cutoff = T0 + timedelta(days=5, hours=7)
    before = build_training_set(ws, end=cutoff)
    assert before.frame.height > 100
    # poison every value from the cutoff on: sources whose rows are known at or after it...
    flights = ws.lake.read("silver.flights")
    poisoned = flights.with_columns(
        pl.when(pl.col("time_hour") + LATE_AFTER >= cutoff).then(pl.lit(99999.0)).otherwise(pl.col("arr_delay")).alias("arr_delay")
    )
    ws.lake.write("silver.flights", poisoned, mode="overwrite")
    weather = ws.lake.read("silver.weather")
    ws.lake.write(
        "silver.weather",
        weather.with_columns(pl.when(pl.col("time_hour") >= cutoff).then(9999.0).otherwise(pl.col("temp")).alias("temp")),
        mode="overwrite",
    )
    built = {r.table.table: r for r in build_features(ws)}
    assert built["gold.carrier_late"].changed and built["gold.weather_at_origin"].changed
    # ... and the gold rows stamped at or after the cutoff, directly
    for table in ("carrier_late", "route_late", "weather_at_origin"):
        gold = ws.lake.read(f"gold.{table}")
        feats = [c for c in gold.columns if gold.schema[c] == pl.Float64]
        ws.lake.write(
            f"gold.{table}",
            gold.with_columns([pl.when(pl.col("feature_time") >= cutoff).then(-12345.0).otherwise(pl.col(c)).alias(c) for c in feats]),
            mode="overwrite",
        )
    # refresh=False: use the poisoned gold tables as they are (a refresh would rebuild them from the sources)
    after = build_training_set(ws, end=cutoff, refresh=False)
    # every feature is unchanged (the labels of flights still in the air at the cutoff were poisoned too: labels are not features)
    assert after.frame.drop("late").equals(before.frame.drop("late"))
    assert (after.frame["late"] != before.frame["late"]).any()
    # the poison is really there for later events
    later = build_training_set(ws, start=cutoff, refresh=False)
    assert (later.frame["carrier_late_1d"] == -12345.0).any()


def test_pinned_inputs_rebuild_an_identical_frame(ws: Workspace) -> None:
    first = build_training_set(ws)
    assert [str(r) for r in first.inputs] == [
        "silver.flights@0",
        "gold.weather_at_origin@0",
        "gold.carrier_late@0",
        "gold.route_late@0",
        "gold.plane_age@0",
    ]
    # new data arrives and the gold tables are rebuilt
    extra = make_flights(n=50, seed=99).with_columns((pl.col("flight") + 10000).alias("flight"))
    ws.lake.write("silver.flights", extra)
    # the gold tables built from silver.flights@0 are stale now: the next training set rebuilds them first
    latest = build_training_set(ws)
    assert latest.frame.height == 350 and latest.data_versions["gold.carrier_late"] == 1
    assert latest.data_versions["gold.weather_at_origin"] == 0  # its source did not change: no rebuild, no commit
    stale = build_training_set(ws, refresh=False, pins={"gold.carrier_late": 0})
    assert stale.data_versions["gold.carrier_late"] == 0
    again = build_training_set(ws, pins=first.data_versions)
    assert again.frame.equals(first.frame) and again.inputs == first.inputs
    also = build_training_set(ws, pins=[str(r) for r in first.inputs])
    assert also.frame.equals(first.frame)


def test_offline_equals_online_no_skew(ws: Workspace) -> None:
    ts = build_training_set(ws)
    t = T0 + timedelta(days=6, hours=15)
    materialize(ws, as_of=t)
    offline = ts.frame.filter(pl.col("time_hour") == t)
    assert offline.height >= 1
    # the same entities at the same time, as serving would send them (no label, strings for times)
    rows = [{k: v for k, v in r.items() if k != "late"} | {"time_hour": t.isoformat()} for r in offline.to_dicts()]
    online = get_online_features(ws, rows)
    assert online == offline.select(ts.feature_names).to_dicts()
    # entities at an arbitrary request hour: build an events table for it and compare again
    probe = pl.DataFrame(
        [
            {"carrier": c, "origin": o, "dest": d, "tailnum": tn}
            for c in ("AA", "UA")
            for o in ("EWR", "JFK")
            for d in ("BOS",)
            for tn in ("N1", "N3", None)
        ]
    ).with_columns(
        pl.lit(t).cast(pl.Datetime("us", "UTC")).alias("time_hour"),
        pl.lit(7).cast(pl.Int64).alias("hour"),
        pl.lit(3).cast(pl.Int64).alias("month"),
        pl.lit(700).cast(pl.Int64).alias("distance"),
        pl.lit(15.0).alias("arr_delay"),
        pl.int_range(pl.len()).cast(pl.Int64).alias("flight"),
    )
    ws.lake.write("silver.probe", probe)
    offline_probe = build_training_set(ws, events="silver.probe").frame
    assert offline_probe.height == 12
    online_probe = get_online_features(ws, offline_probe.drop("late").to_dicts())
    assert online_probe == offline_probe.select(ts.feature_names).to_dicts()


def test_online_hides_values_from_after_the_request_and_validates(ws: Workspace) -> None:
    materialize(ws)  # as of the last flight
    early = T0 + timedelta(days=1)
    row = {"carrier": "AA", "origin": "EWR", "dest": "BOS", "tailnum": "N1", "hour": 5, "month": 3, "distance": 200, "time_hour": early}
    (vec,) = get_online_features(ws, [row])
    # the stored values are from days later than this request: never used for it
    assert vec["temp"] is None and vec["carrier_late_1d"] is None and vec["route_flights_2d"] == 0
    assert vec["plane_age"] == 13  # static: no time
    with pytest.raises(ValidationFailed, match="distance"):
        get_online_features(ws, [{k: v for k, v in row.items() if k != "distance"}])
    with pytest.raises(ValidationFailed, match="hour"):
        get_online_features(ws, [row | {"hour": "five"}])


def test_skew_free_through_redis(tmp_path: Path, redis_url: str, unique: str) -> None:
    storage = f"  online_store_url: {redis_url}\n"
    w = write_project(tmp_path, extra_storage=storage, project=f"t{unique}")
    w.lake.write("silver.flights", make_flights(), partition_by=["_date"])
    w.lake.write("silver.weather", make_weather(), partition_by=["_date"])
    w.lake.write("silver.planes", make_planes())
    try:
        ts = build_training_set(w)
        res = materialize(w)
        assert res.store.startswith("redis://") and res.entities["route_late"] == 9
        offline = ts.frame.filter(pl.col("time_hour") == res.as_of)
        online = get_online_features(w, offline.drop("late").to_dicts())
        assert online == offline.select(ts.feature_names).to_dicts()
    finally:
        import redis

        r = redis.Redis.from_url(redis_url)
        keys = list(r.scan_iter(match=f"steward:t{unique}:*"))
        assert keys, "the store wrote under its project prefix"
        r.delete(*keys)
        w.close()


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_online_store_replace_and_batched_read(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
        store: SqliteOnlineStore | RedisOnlineStore = RedisOnlineStore(url, prefix=f"test:{request.getfixturevalue('unique')}:")
    else:
        store = SqliteOnlineStore(tmp_path / "online.db")
    try:
        assert store.replace("t1", {f"k{i}": f"v{i}" for i in range(200)}) == 200
        store.replace("t2", {"a": "1"})
        got = store.read({"t1": ["k5", "nope", "k199", "k5"], "t2": ["a", "b"], "t3": ["x"]})
        assert got == {"t1": ["v5", None, "v199", "v5"], "t2": ["1", None], "t3": [None]}
        # replace swaps the whole table: old keys are gone
        store.replace("t1", {"k5": "new"})
        assert store.read({"t1": ["k5", "k6"]}) == {"t1": ["new", None]}
        assert store.count("t1") == 1 and store.count("t2") == 1
        if isinstance(store, RedisOnlineStore):
            # one round trip for 100 entities across tables: a single pipelined execute
            calls = []
            real = store._redis.pipeline

            def counting(*a: object, **k: object) -> object:
                p = real(*a, **k)
                orig = p.execute
                p.execute = lambda *x, **y: calls.append(1) or orig(*x, **y)
                return p

            store._redis.pipeline = counting
            store.read({"t1": [f"k{i}" for i in range(100)], "t2": [f"a{i}" for i in range(100)]})
            assert len(calls) == 1
    finally:
        store.drop("t1")
        store.drop("t2")
        store.close()


def test_transform_escape_hatch(tmp_path: Path) -> None:
    (tmp_path / "myfeatures.py").write_text(
        "import polars as pl\n"
        "def windy(df: pl.DataFrame) -> pl.DataFrame:\n"
        "    return df.select('origin', 'time_hour', (pl.col('wind_speed') > 15).cast(pl.Int8).alias('windy'),\n"
        "                     (pl.col('temp') - 32).mul(5 / 9).alias('temp_c'))\n"
    )
    yaml = """
features:
  entities: {origin: {keys: [origin]}}
  tables:
    wx:
      entity: origin
      source: silver.weather
      timestamp: time_hour
      transform: myfeatures.windy
  events:
    source: silver.flights
    timestamp: time_hour
    label: {name: late, expr: "arr_delay >= 15"}
    features: [distance]
"""
    w = write_project(tmp_path, yaml)
    w.lake.write("silver.flights", make_flights(n=60))
    weather = make_weather(skip_every=10**6)
    w.lake.write("silver.weather", weather)
    ts = build_training_set(w)
    assert ts.feature_names == ["distance", "windy", "temp_c"]
    joined = ts.frame.join(weather.select("origin", "time_hour", "wind_speed", "temp"), on=["origin", "time_hour"], how="left")
    assert joined.height == 60
    for r in joined.to_dicts():
        assert r["windy"] == int(r["wind_speed"] > 15)
        assert r["temp_c"] == pytest.approx((r["temp"] - 32) * 5 / 9)
    w.close()


def test_bad_transform_and_unknown_column_name_the_key(tmp_path: Path) -> None:
    base = """
features:
  entities: {origin: {keys: [origin]}}
  tables:
    wx: {entity: origin, source: silver.weather, timestamp: time_hour, %s}
"""
    w = write_project(tmp_path, base % "transform: nowhere_pkg.fn")
    w.lake.write("silver.weather", make_weather(days=1))
    with pytest.raises(SpecError, match=r"features\.tables\.wx\.transform.*cannot import"):
        build_features(w)
    w = write_project(tmp_path, base % "columns: {t: tmp + 1}")
    with pytest.raises(SpecError, match=r"features\.tables\.wx.*column\(s\) tmp not in the source"):
        build_features(w)
    w = write_project(tmp_path, base % "columns: {t: 'temp +* 1'}")
    with pytest.raises(SpecError, match=r"features\.tables\.wx\.columns\.t.*cannot parse"):
        build_features(w)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("{entity: nobody, source: silver.weather, columns: {t: temp}}", "unknown entity 'nobody'"),
        ("{entity: origin, source: silver.weather, timestamp: time_hour}", "exactly one of 'columns', 'transform' or 'aggregates'"),
        ("{entity: origin, source: silver.weather, columns: {t: temp}, transform: a.b}", "exactly one of"),
        ("{entity: origin, source: weather, columns: {t: temp}}", "a source is LAYER.NAME"),
        ("{entity: origin, source: silver.weather, aggregates: [{name: a, expr: x, window: 7d}]}", "'aggregates' need 'timestamp'"),
        ("{entity: origin, source: silver.weather, timestamp: t, aggregates: [{name: a, expr: x, window: 7days}]}", "a duration is"),
        ("{entity: origin, source: silver.weather, columns: {t: temp}, ttl: soon}", "a duration is"),
        ("{entity: origin, source: silver.weather, columns: {t: temp}, colums: {}}", "did you mean 'columns'"),
        (
            "{entity: origin, source: silver.weather, aggregates: [{name: a, expr: x, window: 7d, function: median}], timestamp: t}",
            "function",
        ),
        ("{entity: origin, source: silver.weather, transform: nodots}", "dotted path"),
    ],
)
def test_spec_errors_for_bad_feature_definitions(tmp_path: Path, table: str, message: str) -> None:
    yaml = f"features:\n  entities: {{origin: {{keys: [origin]}}}}\n  tables:\n    wx: {table}\n"
    with pytest.raises(SpecError, match=message) as exc:
        write_project(tmp_path, yaml)
    assert "features" in str(exc.value) and "steward.yaml" in str(exc.value)


def test_duplicate_feature_names_and_bad_categorical_are_spec_errors(tmp_path: Path) -> None:
    yaml = """
features:
  entities: {origin: {keys: [origin]}}
  tables:
    a: {entity: origin, source: silver.weather, columns: {temp: temp}}
    b: {entity: origin, source: silver.weather, columns: {temp: temp}}
"""
    with pytest.raises(SpecError, match=r"feature 'temp' is also defined in tables\.a"):
        write_project(tmp_path, yaml)
    yaml = "features:\n  entities: {origin: {keys: [origin]}}\n  tables:\n    a: {entity: origin, source: silver.weather, columns: {temp: temp}}\n  categorical: [tmp]\n"
    with pytest.raises(SpecError, match="categorical: 'tmp' is not a feature"):
        write_project(tmp_path, yaml)


def test_build_is_idempotent_and_records_lineage(ws: Workspace) -> None:
    first = build_features(ws)
    assert all(r.changed for r in first)
    second = build_features(ws)
    assert not any(r.changed for r in second) and [r.table for r in second] == [r.table for r in first]
    rows = ws.metadata.fetchall(
        "SELECT direction, table_ref FROM lineage WHERE run_id IN (SELECT run_id FROM table_commits WHERE table_name = ?)",
        ("gold.carrier_late",),
    )
    assert {(r["direction"], r["table_ref"]) for r in rows} >= {("input", "silver.flights@0"), ("output", "gold.carrier_late@0")}
    assert ws.lake.pin("gold.carrier_late") == TableRef("gold", "carrier_late", 0)


def test_changed_definition_rewrites_the_gold_schema(ws: Workspace, tmp_path: Path) -> None:
    build_features(ws, ["weather_at_origin"])
    spec_text = (
        (tmp_path / "steward.yaml")
        .read_text()
        .replace("columns: {temp: temp, wind_speed: wind_speed, visib: visib}", "columns: {temp_x2: temp * 2}")
    )
    (tmp_path / "steward.yaml").write_text(spec_text)
    from steward.spec import load_spec

    w2 = Workspace(load_spec(tmp_path))
    (res,) = build_features(w2, ["weather_at_origin"])
    assert res.changed and res.table.version == 1
    gold = w2.lake.read("gold.weather_at_origin")
    assert gold.columns == ["origin", "feature_time", "temp_x2"]
    w2.close()


def test_start_end_filters_use_utc(ws: Workspace) -> None:
    start = datetime(2013, 3, 3)  # naive = UTC
    end = datetime(2013, 3, 4, tzinfo=UTC)
    ts = build_training_set(ws, start=start, end=end)
    assert ts.frame.height > 0
    assert ts.frame["time_hour"].min() >= start.replace(tzinfo=UTC)  # type: ignore[operator]
    assert ts.frame["time_hour"].max() < end  # type: ignore[operator]


def test_refresh_rebuilds_only_stale_tables_and_remembers_unchanged_results(ws: Workspace) -> None:
    build_features(ws)
    # the same flights again: a new source version whose features are identical
    ws.lake.write("silver.flights", ws.lake.read("silver.flights"), mode="overwrite")
    ts = build_training_set(ws)
    assert ts.data_versions["silver.flights"] == 1 and ts.data_versions["gold.carrier_late"] == 0  # no new gold commit
    rows = ws.metadata.fetchall(
        "SELECT l.table_ref FROM table_commits c JOIN lineage l ON l.run_id = c.run_id AND l.direction = 'input' "
        "WHERE c.table_name = ? AND c.version = 0",
        ("gold.carrier_late",),
    )
    assert {r["table_ref"] for r in rows} >= {"silver.flights@0", "silver.flights@1"}
    history = len(ws.lake.history("gold.carrier_late"))
    build_training_set(ws)
    assert len(ws.lake.history("gold.carrier_late")) == history == 1
