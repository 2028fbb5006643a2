"""The installed package: version, public API, command line."""

import subprocess
import sys
from importlib.metadata import version

import pytest

import defocus_xai as dx
from defocus_xai.cli import main


def test_version_matches_distribution_metadata():
    assert dx.__version__ == version("defocus-xai")


def test_cli_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert dx.__version__ in capsys.readouterr().out


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "defocus_xai", "--help"], capture_output=True, text=True, check=True
    )
    assert "defocus-xai" in out.stdout
