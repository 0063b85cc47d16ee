"""The ULMFiT benchmark scripts run end to end at a tiny size (ours only, no timing asserted): a renamed option, a
broken import or a changed result format shows here, not an hour into a full-size run."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / 'bench'
DATA = Path(__file__).resolve().parents[2] / 'shared' / 'data'
TINY = ['--size', 'tiny', '--lm-epochs', '1', '--clas-epochs', '1']


def run(script: str, tmp_path: Path, *args: str) -> tuple[dict, str]:
    "Run a benchmark script; its JSON results and its standard output."
    out, tmp = tmp_path / 'result.json', tmp_path / 'tmp'
    tmp.mkdir()
    p = subprocess.run([sys.executable, str(BENCH / script), *args, '--json-out', str(out)], capture_output=True,
                       text=True, timeout=900, env=dict(os.environ, OMP_NUM_THREADS='1', TMPDIR=str(tmp)), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(out.read_text()), p.stdout


def test_trec6_runs_several_splits_and_averages_them(tmp_path):
    res, out = run('trec6.py', tmp_path, '--impl', 'ours', *TINY, '--seeds', '3', '4')
    assert [(r['impl'], r['seed']) for r in res['runs']] == [('ours', 3), ('ours', 4)]
    assert res['args']['seeds'] == [3, 4] and res['args']['size'] == 'tiny', 'the args as given'
    for r in res['runs']:
        c = r['clas_fwd']
        assert 0 <= c['valid_error'] <= 1 and 0 <= c['test_error'] <= 1 and c['best_valid_error'] <= c['valid_error']
        assert len(c['lm_history']) == 1 and r['process_wall_s'] > c['seconds'] > 0
    assert '| ours | fwd | 3 |' in out and '| ours | fwd | mean of 2 |' in out


def test_trec6_without_fastai_python_says_how_to_get_it(tmp_path):
    p = subprocess.run([sys.executable, str(BENCH / 'trec6.py'), *TINY], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode != 0 and 'fastai needs --fastai-python (see bench/README.md)' in p.stderr


@pytest.mark.skipif(not (DATA / 'imdb' / 'unsup.csv.xz').exists(), reason='needs ../shared/data/imdb')
def test_imdb_subset_runs_both_directions(tmp_path):
    res, out = run('imdb.py', tmp_path, '--subset', '40', *TINY, '--bs', '8', '--bidir')
    assert res['n'] == {'train': 40, 'test': 40, 'unsup': 80}
    assert {'fwd', 'bwd', 'bidir'} <= set(res) and all(0 <= res[d]['test_error'] <= 1 for d in ('fwd', 'bwd', 'bidir'))
    assert '| bidir |' in out and not list((tmp_path / 'tmp').iterdir()), 'its temporary work folder is removed'


def test_the_benchmarks_offer_the_librarys_schedules():
    "bench/_common.py imports only the standard library (fastai's virtualenv reads it), so its list is a copy: kept equal here."
    import argparse
    sys.path.insert(0, str(BENCH))
    try: from _common import add_recipe_args
    finally: sys.path.remove(str(BENCH))
    from ulmfit_learner import SCHEDULES
    p = argparse.ArgumentParser()
    add_recipe_args(p, clas_epochs=1, drop_mults=(1., 1.))
    assert tuple(next(a for a in p._actions if a.dest == 'schedule' and a.choices).choices) == SCHEDULES
    assert p.parse_args(['--no-stlr']).schedule == 'constant' and p.parse_args([]).schedule == 'stlr'
