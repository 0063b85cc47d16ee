"""The `ulmfit` command: its demo trains and prints the metrics table."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ulmfit_learner.cli import main


def test_demo_prints_the_metrics_tables(capsys):
    assert main(['demo', '--lm-epochs', '1', '--clas-epochs', '1', '--n-docs', '500', '--device', 'cpu']) == 0
    out = capsys.readouterr().out
    assert 'Stage 1' in out and 'perplexity' in out, "the language model's table"
    assert 'Stage 2' in out and out.count('train_loss') >= 3, "and the classifier's tables"
    assert 'final validation accuracy' in out and 'test accuracy' in out


def test_default_demo_learns_trec6(capsys):
    "The README's first command: the full demo classifies TREC-6 questions well above chance (0.23)."
    main(['demo', '--device', 'cpu'])
    out = capsys.readouterr().out
    acc = float(out.rsplit('test accuracy (the 500 official TREC-6 test questions):', 1)[1].split()[0])
    assert acc > 0.7, f"the default demo should reach a test accuracy above 0.7, got {acc}"


def test_shipped_data():
    from ulmfit_learner.cli import trec6
    train, test = trec6('train'), trec6('test')
    assert len(train) == 5452 and len(test) == 500 and list(train.columns) == ['text', 'label']
    assert sorted(train.label.unique()) == ['ABBR', 'DESC', 'ENTY', 'HUM', 'LOC', 'NUM']


def test_command_line_entry_point():
    "The `ulmfit` script that `pip install` puts next to the interpreter."
    exe = Path(sys.executable).parent / 'ulmfit'
    if not exe.exists(): exe = shutil.which('ulmfit')
    if exe is None: pytest.skip('the package is not installed with its scripts')
    res = subprocess.run([str(exe), '--help'], capture_output=True, text=True)
    assert res.returncode == 0 and 'demo' in res.stdout
