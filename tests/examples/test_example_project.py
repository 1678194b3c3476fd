"""The bundled flights example end to end on real nycflights13 rows: reference tables and plane age."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from steward.data import run_pipeline
from steward.examples.lander import land
from steward.features import build_features, materialize
from steward.features.compute import build_gold, join_table
from steward.features.definitions import FeatureSet
from steward.features.store import build_training_set, get_online_features
from steward.project import init_project
from steward.workspace import Workspace, open_workspace


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """The example project with two landed days ingested (every source)."""
    spec_path = init_project(tmp_path_factory.mktemp("example") / "proj", "flights")
    w = open_workspace(spec_path)
    land(w.spec.resolve("landing"), date(2013, 1, 1), date(2013, 1, 2))
    run_pipeline(w)
    build_features(w)
    yield w
    w.close()


def test_airports_land_once_and_bad_rows_are_quarantined(ws: Workspace) -> None:
    assert set(ws.spec.sources) == {"flights", "weather", "planes", "airlines", "airports"}
    assert (ws.spec.resolve("landing") / "airports" / "airports.csv").exists()
    silver = ws.lake.read("silver.airports")
    quarantined = ws.lake.read("quarantine.airports")
    # three real source errors: two airports with a +8 time zone and a lost longitude sign, one with lat/lon mixed up
    assert set(quarantined["raw"].str.extract(r'"faa": "(\w+)"').to_list()) == {"DVT", "EEN", "MYF"}
    assert {(r["rule"], r["column"]) for r in quarantined.select("rule", "column").to_dicts()} == {
        ("max", "tz"),
        ("max", "lat"),
        ("rule:western_hemisphere", ""),
    }
    assert silver.height == 1_458 - 3
    assert silver["faa"].is_duplicated().sum() == 0 and silver["faa"].null_count() == 0
    assert {"EWR", "JFK", "LGA", "SYA"} <= set(silver["faa"])  # Shemya (174 E, across the 180th meridian) is valid
    assert silver.schema["lat"] == pl.Float64 and silver.schema["tz"] == pl.Int64
    before = ws.lake.version("silver.airports")
    again = run_pipeline(ws, sources=["airports"])  # the same file again: nothing new
    assert again.batches == [] and ws.lake.version("silver.airports") == before


def test_plane_age_is_the_event_year_minus_the_build_year(ws: Workspace) -> None:
    built = ws.lake.read("silver.planes").select("tailnum", pl.col("year").cast(pl.Int64).alias("built"))
    ts = build_training_set(ws)
    frame = ts.frame.join(built, on="tailnum", how="left")
    assert frame.height > 1_000 and frame["plane_age"].null_count() < frame.height
    expected = pl.col("time_hour").dt.year() - pl.col("built")
    assert frame.filter(pl.col("plane_age").ne_missing(expected)).height == 0

    # the same flights a year later: a year older (a fixed "2013 - year" would not move)
    t = datetime(2014, 1, 2, 10, tzinfo=UTC)
    probe = ws.lake.read("silver.flights").unique(subset="tailnum", keep="first", maintain_order=True).head(40)
    probe = probe.with_columns(pl.lit(t).cast(pl.Datetime("us", "UTC")).alias("time_hour"))
    ws.lake.write("silver.probe_2014", probe)
    later = build_training_set(ws, events="silver.probe_2014").frame.join(built, on="tailnum", how="left")
    assert later.height == 40 and later["plane_age"].null_count() < 40
    assert later.filter(pl.col("plane_age").ne_missing(pl.lit(2014) - pl.col("built"))).height == 0

    # online, as of that time, the same vector as offline (no skew)
    materialize(ws, as_of=t)
    rows = [{k: v for k, v in r.items() if k not in ("late", "built")} for r in later.to_dicts()]
    assert get_online_features(ws, rows) == later.select(ts.feature_names).to_dicts()


def test_plane_age_transform_rows_and_horizon(ws: Workspace) -> None:
    fs = FeatureSet.from_spec(ws.spec)
    table = fs.table("plane_age")
    assert table.kind == "transform" and table.ttl == timedelta(days=366)
    fn = table.load_transform(ws.spec)
    planes = pl.DataFrame({"tailnum": ["N1", "N2"], "year": [1990.0, None]})
    out = fn(planes)
    assert out.columns == ["tailnum", "valid_from", "plane_age"]
    assert out["tailnum"].unique().to_list() == ["N1"]  # no build year: no rows, a null feature
    assert out["plane_age"].to_list() == list(range(81))
    assert out["valid_from"][0] == datetime(1990, 1, 1, tzinfo=UTC) and out["valid_from"][-1] == datetime(2070, 1, 1, tzinfo=UTC)
    # through the as-of join: the last hour of a leap year still sees its row; past the last row, null (not 80)
    gold = build_gold(ws.spec, table, planes)
    events = pl.DataFrame(
        {
            "tailnum": ["N1"] * 4,
            "t": [datetime(1989, 6, 1), datetime(2012, 12, 31, 23), datetime(2070, 12, 31, 23), datetime(2071, 6, 1)],
        },
        schema={"tailnum": pl.String, "t": pl.Datetime("us", "UTC")},
    )
    assert join_table(events, "t", table, gold)["plane_age"].to_list() == [None, 22, 80, None]
