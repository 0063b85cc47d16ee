"""Every notebook in `nbs/` runs as a test, with nbdev's own notebook runner."""
from pathlib import Path

import pytest
from nbdev.test import test_nb as run_notebook  # renamed so pytest does not collect nbdev's function as a test

NBS = Path(__file__).resolve().parent.parent / 'nbs'
NOTEBOOKS = sorted(p for p in NBS.glob('*.ipynb') if not p.name.startswith('_'))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 8, f"expected the library's notebooks in {NBS}, found {[p.name for p in NOTEBOOKS]}"


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(nb, monkeypatch):
    monkeypatch.setenv('MPLBACKEND', 'Agg')
    ok, _ = run_notebook(nb, showerr=True)
    assert ok, f"notebook {nb.name} failed (its traceback is printed above)"


def test_notebooks_leave_no_files_behind():
    "Notebooks write what they save to temporary folders, never into `nbs/`."
    stray = [p.name for p in NBS.rglob('*') if p.suffix in {'.pth', '.csv', '.json', '.safetensors', '.tmp'}]
    assert not stray, f"files left in nbs/: {stray}"
