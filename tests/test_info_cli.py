"""Tests for the CLI skeleton (`--version`, one-line errors, stub commands) and `edgesr info`."""

from __future__ import annotations

import importlib.util
import inspect
import json
from pathlib import Path

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


@pytest.fixture(scope="module")
def sd_tile_report() -> dict:
    """`edgesr info -c edge-sd-sr --json` on the paper's 128x128 LR tile (counted on the meta device: instant)."""
    result = runner.invoke(app, ["info", "-c", "edge-sd-sr", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["lr_tile"] == 128 and report["hr_tile"] == 512 and report["latent"] == [8, 64, 64]
    return report


# (our component, the paper's): sec. 3.5 and the abstract; "autoencoder" is what runs at inference
_PAPER_ROWS = [("unet", "unet"), ("lr_encoder+decoder", "autoencoder"), ("total", "total")]


@pytest.mark.parametrize("ours, theirs", _PAPER_ROWS)
def test_edge_sd_sr_costs_the_papers_gflops_in_its_convention(sd_tile_report, ours, theirs):
    # The paper's convention (docs/paper_cost.md): G conv multiply-accumulates, 1 MAC = 1 FLOP.
    c, p = sd_tile_report["components"][ours], sd_tile_report["paper"][theirs]
    assert c["gmacs_conv"] == pytest.approx(p["gflops"], rel=0.10), (ours, c["gmacs_conv"], p["gflops"])
    # and the same if linear layers and attention matmuls count too (half of torch's 2 x MACs)
    assert c["gflops"] / 2 == pytest.approx(p["gflops"], rel=0.10), (ours, c["gflops"] / 2, p["gflops"])


@pytest.mark.parametrize("ours, theirs", _PAPER_ROWS)
def test_edge_sd_sr_has_the_papers_parameters(sd_tile_report, ours, theirs):
    c, p = sd_tile_report["components"][ours], sd_tile_report["paper"][theirs]
    assert c["params"] / 1e6 == pytest.approx(p["params_m"], rel=0.05), (ours, c["params"] / 1e6, p["params_m"])


def test_edge_sd_sr_cost_split(sd_tile_report):
    comp = sd_tile_report["components"]
    for conv in ("gflops", "gmacs_conv"):
        assert comp["total"][conv] == pytest.approx(sum(comp[k][conv] for k in ("lr_encoder", "unet", "decoder")))
        assert comp["lr_encoder+decoder"][conv] == pytest.approx(comp["lr_encoder"][conv] + comp["decoder"][conv])
    # encoder and decoder are convolutions only: both conventions agree there up to the factor 2
    for name in ("lr_encoder", "decoder"):
        assert comp[name]["gflops"] == pytest.approx(2 * comp[name]["gmacs_conv"])
    # the decoder does most of the autoencoder's work, as on the phone (paper 3.5: 22.5 of 30 ms)
    assert 0.6 < comp["decoder"]["gmacs_conv"] / comp["lr_encoder+decoder"]["gmacs_conv"] < 0.9


def test_info_states_its_conventions(sd_tile_report):
    assert "multiply-accumulates of the convolution" in sd_tile_report["paper_convention"]
    assert "2 x MACs" in sd_tile_report["flop_convention"]
    result = runner.invoke(app, ["info", "-c", "edge-sd-sr"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())  # the table wraps to the terminal
    for words in ("paper conv.", "2xMACs", "1 FLOP = 1 multiply-accumulate of a convolution", "docs/paper_cost.md"):
        assert words in out, words
    for value in ("39.1", "99.7", "138.8"):  # the measured conv-MAC column
        assert value in out, value


def _paper_cost_reference():
    path = Path(__file__).resolve().parents[1] / "scripts" / "paper_cost_reference.py"
    spec = importlib.util.spec_from_file_location("paper_cost_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_paper_convention_reproduces_its_sd15_numbers():
    # Why conv MACs: the paper's SD 1.5 figures (sec. 3.5), counted the same way, on the same tile.
    ref = _paper_cost_reference().reference(lr_tile=128, scale=4)
    rows = ref["rows"]
    assert rows["unet"]["params"] / 1e6 == pytest.approx(860, rel=0.01)
    assert rows["autoencoder"]["params"] / 1e6 == pytest.approx(83, rel=0.02)
    assert rows["unet"]["gmacs_conv"] == pytest.approx(222, rel=0.01)  # 222.0
    assert rows["autoencoder"]["gmacs_conv"] == pytest.approx(1820, rel=0.03)  # 1781
    # the other readings miss: all MACs count the UNet's attention and linear layers (402), 2 x MACs doubles
    assert rows["unet"]["gmacs_all"] > 1.5 * 222
    assert rows["unet"]["gflops_2x"] > 3 * 222 and rows["autoencoder"]["gflops_2x"] > 1.9 * 1820


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
