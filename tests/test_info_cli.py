"""Tests for the CLI skeleton (`--version`, one-line errors, stub commands) and `edgesr info`."""

from __future__ import annotations

import inspect
import json

import pytest
from typer.testing import CliRunner

from edgesr_cli import __version__
from edgesr_cli.cli import app
from edgesr_cli.config import PRESETS

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("EDGESR_DEBUG", raising=False)  # user errors must stay one line


def _command_help(info) -> str:
    return info.help or inspect.getdoc(info.callback) or ""


def _command_name(info) -> str:
    return info.name or info.callback.__name__.replace("_", "-")


def _stub_commands() -> list[str]:
    """Commands whose help says they are not implemented yet (read from the app at run time)."""
    return sorted(_command_name(c) for c in app.registered_commands if "not implemented yet" in _command_help(c))


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"edgesr {__version__}"


def test_no_arguments_shows_help():
    result = runner.invoke(app, [])
    assert "info" in result.output and "Usage" in result.output
    assert "Traceback" not in result.output


def test_info_json_edge_sd_sr():
    # --tile 16: the smallest tile the paper preset takes; parameter counts do not depend on it
    result = runner.invoke(app, ["info", "--config", "edge-sd-sr", "--tile", "16", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    comp = report["components"]
    assert comp["total"]["params"] == pytest.approx(169e6, rel=0.05)
    assert comp["unet"]["params"] == pytest.approx(158e6, rel=0.05)
    assert all(comp[k]["gflops"] > 0 for k in ("lr_encoder", "unet", "decoder", "total"))
    assert "paper" in report and report["paper"]["total"]["params_m"] == 169.0
    assert report["config"] == "edge-sd-sr" and report["scale"] == 4 and report["lr_tile"] == 16


def test_info_table():
    result = runner.invoke(app, ["info", "--config", "test-tiny", "--tile", "16"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "paper" in out
    for word in ("test-tiny", "lr_encoder", "unet", "decoder", "total", "GFLOPs"):
        assert word in out, word
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)  # a table, not JSON


def test_info_json_test_tiny_is_small():
    result = runner.invoke(app, ["info", "-c", "test-tiny", "-t", "16", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert 0 < report["components"]["total"]["params"] < 1e6
    assert report["latent"] == [4, 16, 16]


@pytest.mark.parametrize("args", [["info", "--config", "no-such-preset"], ["info", "-c", "EDGE-SD-SR", "--json"]])
def test_info_unknown_config_is_a_one_line_error(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)  # a clean exit, not an escaped exception
    assert "Traceback" not in result.output
    lines = _lines(result.output)
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:") and "unknown config" in lines[0]
    assert all(name in lines[0] for name in PRESETS)  # tells the user what exists
    assert result.stdout.strip() == ""  # the error goes to stderr


def test_info_bad_tile_is_a_one_line_error():
    result = runner.invoke(app, ["info", "--config", "test-tiny", "--tile", "7"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    lines = _lines(result.output)
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output


def test_stub_commands_are_detected_at_run_time():
    stubs = _stub_commands()
    names = {_command_name(c) for c in app.registered_commands}
    assert "info" in names and "info" not in stubs
    assert set(stubs) <= {"export", "bench", "eval", "upscale"} | names


@pytest.mark.parametrize("name", _stub_commands())
@pytest.mark.parametrize("extra", [[], ["--model", "x", "photo.png"]], ids=["bare", "with-args"])
def test_not_implemented_commands_fail_cleanly(name, extra):
    result = runner.invoke(app, [name, *extra])
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = _lines(result.output)
    assert len(lines) == 1, result.output
    assert "not implemented yet" in lines[0] and name in lines[0]
    help_result = runner.invoke(app, [name, "--help"])
    assert help_result.exit_code == 0 and "not implemented yet" in help_result.output


def test_unknown_command_fails():
    result = runner.invoke(app, ["frobnicate"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
