"""``steward contract check`` and ``steward contract diff`` through the real Typer app."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from steward.cli.app import app, main
from steward.errors import BreakingContractChange, ContractError

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wide console so Rich does not wrap table cells (the width otherwise follows the terminal)."""
    import importlib

    from rich.console import Console

    # steward.cli re-exports the Typer object as `app`, shadowing the module attribute; import the module itself.
    cli_app = importlib.import_module("steward.cli.app")
    monkeypatch.setitem(cli_app._state, "console", Console(width=250))


CONTRACT = {
    "name": "t",
    "version": "1.0.0",
    "key": ["id"],
    "columns": {
        "id": {"type": "int64"},
        "n": {"type": "int64", "min": 0, "max": 10, "nullable": False},
        "s": {"type": "string", "allowed": ["a", "b"]},
    },
}


def write(path: Path, data: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def flat(text: str) -> str:
    """Output with Rich's wrapping undone (the console width depends on the terminal)."""
    return " ".join(text.split())


def test_check_valid_contract(tmp_path: Path) -> None:
    res = runner.invoke(app, ["contract", "check", str(write(tmp_path / "c.yaml", CONTRACT))])
    assert res.exit_code == 0, res.output
    assert "is valid" in flat(res.output)
    assert "allowed 2 value(s)" in flat(res.output)


def test_check_with_data_prints_accounting_and_reasons(tmp_path: Path) -> None:
    c = write(tmp_path / "c.yaml", CONTRACT)
    pl.DataFrame({"id": ["1", "2", "3", "4"], "n": ["5", "50", "", "x"], "s": ["a", "z", "b", "a"]}).write_csv(tmp_path / "d.csv")
    res = runner.invoke(app, ["contract", "check", str(c), "--data", str(tmp_path / "d.csv")], terminal_width=200)
    assert res.exit_code == 0, res.output
    out = flat(res.output)
    assert "accounting" in out
    # 4 in, 1 valid, 3 failed, 4 (row, rule) failures: the accounting row is the first row of digits
    assert "│ 4 │ 1 │ 3 │ 4 │ 1.0.0 │" in out
    for text in ("n=50 is above max 10", "s=z is not one of [a, b]", "n is null", "n=x does not parse as int64"):
        assert text in out
    strict = runner.invoke(app, ["contract", "check", str(c), "--data", str(tmp_path / "d.csv"), "--strict"])
    assert strict.exit_code == 1


def test_check_bad_contract_gives_one_error_naming_the_key(tmp_path: Path) -> None:
    bad = dict(CONTRACT, columns={"id": {"type": "int64", "nulable": False}})
    res = runner.invoke(app, ["contract", "check", str(write(tmp_path / "bad.yaml", bad))])
    assert isinstance(res.exception, ContractError)
    assert "columns.id.nulable" in str(res.exception)
    assert "bad.yaml" in str(res.exception)


def test_diff_compatible_exits_zero(tmp_path: Path) -> None:
    old = write(tmp_path / "old.yaml", CONTRACT)
    new_data = yaml.safe_load(yaml.safe_dump(CONTRACT))
    new_data["version"] = "1.1.0"
    new_data["columns"]["extra"] = {"type": "float64"}
    new_data["columns"]["n"]["max"] = 20
    new = write(tmp_path / "new.yaml", new_data)
    res = runner.invoke(app, ["contract", "diff", str(old), str(new)], terminal_width=200)
    assert res.exit_code == 0, res.output
    out = flat(res.output)
    assert "columns.extra" in out and "columns.n.max" in out
    assert "breaking" not in out
    assert "3 compatible change(s)" in out


def test_diff_breaking_raises_with_exit_code_3(tmp_path: Path) -> None:
    old = write(tmp_path / "old.yaml", CONTRACT)
    new_data = yaml.safe_load(yaml.safe_dump(CONTRACT))
    new_data["columns"]["n"]["type"] = "float64"
    new_data["columns"]["s"]["allowed"] = ["a"]
    new_data["columns"]["extra"] = {"type": "float64"}
    new = write(tmp_path / "new.yaml", new_data)
    res = runner.invoke(app, ["contract", "diff", str(old), str(new)], terminal_width=200)
    assert isinstance(res.exception, BreakingContractChange)
    assert res.exception.exit_code == 3
    # every change is printed, compatible ones too
    for path in ("columns.n.type", "columns.s.allowed", "columns.extra"):
        assert path in flat(res.output)


def test_diff_breaking_exit_code_through_main(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    old = write(tmp_path / "old.yaml", CONTRACT)
    new_data = yaml.safe_load(yaml.safe_dump(CONTRACT))
    new_data["key"] = ["id", "n"]
    new = write(tmp_path / "new.yaml", new_data)
    monkeypatch.setattr(sys, "argv", ["steward", "contract", "diff", str(old), str(new)])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 3
    assert "contract.breaking" in capsys.readouterr().err.replace("\n", "")
    monkeypatch.setattr(sys, "argv", ["steward", "contract", "diff", str(old), str(old)])
    code: int | str | None = 0
    try:
        main()  # no changes: exit status 0 (standalone click exits 0; otherwise main returns)
    except SystemExit as ok:
        code = ok.code
    assert code in (0, None)
    assert "no changes" in capsys.readouterr().out


def test_check_resolves_a_contract_name_from_steward_yaml(tmp_path: Path) -> None:
    (tmp_path / "contracts").mkdir()
    write(tmp_path / "contracts" / "t.yaml", CONTRACT)
    (tmp_path / "steward.yaml").write_text("project: p\ncontracts:\n  trips: contracts/t.yaml\n")
    res = runner.invoke(app, ["--spec", str(tmp_path), "contract", "check", "trips"])
    assert res.exit_code == 0, res.output
    assert "contract t v1.0.0" in flat(res.output)
    unknown = runner.invoke(app, ["--spec", str(tmp_path), "contract", "check", "nope"])
    assert "contract 'nope' is not declared" in str(unknown.exception)


def test_check_example_contract_on_flights_sample(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "src/steward/examples/flights/contracts/flights.yaml"
    header = "year,month,day,dep_time,sched_dep_time,dep_delay,arr_time,sched_arr_time,arr_delay,carrier,flight,tailnum,origin,dest,air_time,distance,hour,minute,time_hour"
    lines = [
        "2013,1,1,517.0,515,2.0,830.0,819,11.0,UA,1545,N14228,EWR,IAH,227.0,1400,5,15,2013-01-01T10:00:00Z",
        "2013,1,1,,1630,,,1815,,EV,4308,N18120,EWR,RDU,,416,16,30,2013-01-01T21:00:00Z",
        "2013,13,1,517.0,515,2.0,830.0,819,11.0,UA,1545,N14228,BOS,IAH,227.0,1400,5,15,2013-01-01T10:00:00Z",
    ]
    (tmp_path / "f.csv").write_text("\n".join([header, *lines]) + "\n")
    res = runner.invoke(app, ["contract", "check", str(example), "--data", str(tmp_path / "f.csv"), "--now", "2013-01-02T00:00:00Z"])
    assert res.exit_code == 0, res.output
    out = flat(res.output)
    assert "│ 3 │ 1 │ 2 │ 6 │ 1.0.0 │" in out  # 3 in, 1 valid, 2 failed, 6 (row, rule) failures
    assert "month=13 is above max 12" in out
    assert "origin=BOS is not one of [EWR, JFK, LGA]" in out
    assert "older than max_age" not in out
    stale = runner.invoke(app, ["contract", "check", str(example), "--data", str(tmp_path / "f.csv"), "--now", "2013-03-01T00:00:00Z"])
    assert "warning: freshness: newest time_hour is 2013-01-01T10:00:00+00:00" in flat(stale.output)
