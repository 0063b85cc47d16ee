"""The `ulmfit` command: its demo trains and prints the metrics table."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ulmfit_learner.cli import main


def test_demo_prints_a_metrics_table(capsys):
    assert main(['demo', '--epochs', '2', '--device', 'cpu']) == 0
    out = capsys.readouterr().out
    assert 'train_loss' in out and 'valid_loss' in out and 'accuracy' in out
    assert 'final validation accuracy' in out


def test_demo_learns_the_spirals(capsys):
    main(['demo', '--device', 'cpu'])
    out = capsys.readouterr().out
    acc = float(out.rsplit('final validation accuracy:', 1)[1].split()[0])
    assert acc > 0.8, f"the default demo should separate the spirals, got accuracy {acc}"


def test_command_line_entry_point():
    "The `ulmfit` script that `pip install` puts next to the interpreter."
    exe = Path(sys.executable).parent / 'ulmfit'
    if not exe.exists(): exe = shutil.which('ulmfit')
    if exe is None: pytest.skip('the package is not installed with its scripts')
    res = subprocess.run([str(exe), '--help'], capture_output=True, text=True)
    assert res.returncode == 0 and 'demo' in res.stdout
