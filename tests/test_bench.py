"""The ULMFiT benchmark scripts run end to end at a tiny size (ours only, no timing asserted): a renamed option, a
broken import or a changed result format shows here, not an hour into a full-size run."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA

BENCH = Path(__file__).resolve().parents[1] / 'bench'
TINY = ['--size', 'tiny', '--lm-epochs', '1', '--clas-epochs', '1']


def run(script: str, tmp_path: Path, *args: str) -> tuple[dict, str]:
    "Run a benchmark script; its JSON results and its standard output."
    out, tmp = tmp_path / 'result.json', tmp_path / 'tmp'
    tmp.mkdir()
    # torch's compile cache goes to TMPDIR unless named: named here, so that `tmp` holds only what the script leaves
    env = dict(os.environ, OMP_NUM_THREADS='1', TMPDIR=str(tmp), TORCHINDUCTOR_CACHE_DIR=str(tmp_path / 'inductor'))
    p = subprocess.run([sys.executable, str(BENCH / script), *args, '--json-out', str(out)], capture_output=True,
                       text=True, timeout=900, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(out.read_text()), p.stdout


def test_trec6_runs_several_splits_and_averages_them(tmp_path):
    res, out = run('trec6.py', tmp_path, '--impl', 'ours', *TINY, '--seeds', '3', '4', '--vocab-from', 'all')
    assert [(r['impl'], r['seed']) for r in res['runs']] == [('ours', 3), ('ours', 4)]
    assert res['args']['seeds'] == [3, 4] and res['args']['size'] == 'tiny', 'the args as given'
    assert res['args']['vocab_from'] == 'all'
    for r in res['runs']:
        c = r['clas_fwd']
        assert 0 <= c['valid_error'] <= 1 and 0 <= c['test_error'] <= 1 and c['best_valid_error'] <= c['valid_error']
        assert len(c['lm_history']) == 1 and r['process_wall_s'] > c['seconds'] > 0
        assert len(c['test_wrong']) == round(500 * c['test_error']) and all(0 <= i < 500 for i in c['test_wrong'])
    assert '| ours | fwd | 3 |' in out and '| ours | fwd | mean of 2 |' in out


@pytest.mark.parametrize('where', [[], ['classifier']])
def test_trec6_extend_vocab_reaches_the_recipe(tmp_path, where):
    """`--extend-vocab` with a (tiny) pretrained model: the classifier's vocabulary holds the pretrained one, and the
    language model's too unless `--extend-vocab classifier`."""
    from ulmfit_learner import pretrain, pretrained_vocab
    from ulmfit_learner.recipe import trec6
    pretrain(list(trec6('train').text[::10]), tmp_path / 'pre', config=dict(emb_sz=8, n_hid=16, n_layers=1), bs=16,
             seq_len=20, min_freq=1, checkpoint_minutes=None, device='cpu', progress=False)
    pre = pretrained_vocab(tmp_path / 'pre')
    res, _ = run('trec6.py', tmp_path, '--impl', 'ours', *TINY, '--seed', '3', '--pretrained', str(tmp_path / 'pre'),
                 '--extend-vocab', *where)
    assert res['args']['extend_vocab'] == (where[0] if where else True)
    clas = res['runs'][0]['clas_fwd']
    assert clas['vocab_size'] >= len(pre)
    assert (clas['lm_vocab_size'] < clas['vocab_size']) if where else clas['lm_vocab_size'] == clas['vocab_size']


def test_trec6_without_fastai_python_says_how_to_get_it(tmp_path):
    p = subprocess.run([sys.executable, str(BENCH / 'trec6.py'), *TINY], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode != 0 and 'fastai needs --fastai-python (see bench/README.md)' in p.stderr


@pytest.mark.skipif(not (DATA / 'imdb' / 'unsup.csv.xz').exists(), reason='needs ../shared/data/imdb')
def test_imdb_subset_runs_both_directions(tmp_path):
    res, out = run('imdb.py', tmp_path, '--subset', '40', *TINY, '--bs', '8', '--bidir')
    assert res['n'] == {'train': 40, 'test': 40, 'unsup': 80}
    assert {'fwd', 'bwd', 'bidir'} <= set(res) and all(0 <= res[d]['test_error'] <= 1 for d in ('fwd', 'bwd', 'bidir'))
    assert all(len(res[d]['test_wrong']) == round(40 * res[d]['test_error']) for d in ('fwd', 'bwd', 'bidir'))
    assert '| bidir |' in out and not list((tmp_path / 'tmp').iterdir()), 'its temporary work folder is removed'


def test_the_benchmarks_offer_the_librarys_schedules():
    "bench/_common.py imports only the standard library (fastai's virtualenv reads it), so its lists are copies: kept equal here."
    import argparse
    sys.path.insert(0, str(BENCH))
    try: from _common import add_recipe_args
    finally: sys.path.remove(str(BENCH))
    from ulmfit_learner import SCHEDULES, VOCAB_FROM
    p = argparse.ArgumentParser()
    add_recipe_args(p, clas_epochs=1, drop_mults=(1., 1.))
    assert tuple(next(a for a in p._actions if a.dest == 'schedule' and a.choices).choices) == SCHEDULES
    assert tuple(next(a for a in p._actions if a.dest == 'vocab_from').choices) == VOCAB_FROM
    assert p.parse_args(['--no-stlr']).schedule == 'constant' and p.parse_args([]).schedule == 'stlr'


def test_throughput_bench_counts_the_language_models_flops(tmp_path):
    """The throughput benchmark's hardware figures: FLOPs per token counted from the config (checked by hand here),
    3x the forward's per step, the encoder task without the decoder; no matmul yardstick on a CPU."""
    res, out = run('awdlstm_throughput.py', tmp_path, '--impls', 'ours', '--tasks', 'lm,enc', '--vocab', '100',
                   '--bs', '2', '--seq-len', '8', '--warmup', '1', '--batches', '2')
    lstm = 2 * 4 * 1152 * (400 + 1152) + 2 * 4 * 1152 * (1152 + 1152) + 2 * 4 * 400 * (1152 + 400)
    by_task = {r['task']: r for r in res['results']}
    assert set(by_task) == {'lm', 'enc'} and res['matmul_peak'] is None
    assert by_task['lm']['lm_fwd_flops_per_token'] == lstm + 2 * 400 * 100
    assert by_task['enc']['lm_fwd_flops_per_token'] == lstm and by_task['enc']['lstm_flops_share'] == 1
    for r in by_task.values():
        assert r['tflops'] == pytest.approx(3 * r['lm_fwd_flops_per_token'] * r['tokens_per_s'] / 1e12)
        assert 'share_of_matmul_peak' not in r
    assert '| ours | enc | cpu/none | 40.5 | 100% |' in out


def test_throughput_bench_fails_when_a_half_fails(tmp_path):
    "A Python without fastai as --fastai-python: ours is measured and tabled, and the run exits non-zero naming fastai's half."
    if importlib.util.find_spec('fastai'): pytest.skip('needs a Python without fastai: this one has it')
    p = subprocess.run([sys.executable, str(BENCH / 'awdlstm_throughput.py'), '--tasks', 'enc', '--vocab', '100', '--bs', '2',
                        '--seq-len', '8', '--warmup', '1', '--batches', '1', '--fastai-python', sys.executable,
                        '--json-out', str(tmp_path / 'r.json')], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, OMP_NUM_THREADS='1'), cwd=tmp_path)
    results = json.loads((tmp_path / 'r.json').read_text())['results']
    assert p.returncode == 1 and 'failed: fastai enc' in p.stderr
    assert [r['impl'] for r in results] == ['ours', 'fastai'] and 'tokens_per_s' in results[0] and 'error' in results[1]


def test_matmul_peak_gives_a_rate_and_shares_of_it():
    sys.path.insert(0, str(BENCH))
    try: import awdlstm_throughput as bench
    finally: sys.path.remove(str(BENCH))
    peak = bench.matmul_peak('cpu', 'none', n=64, reps=2)
    assert peak['n'] == 64 and peak['dtype'] == 'float32' and peak['tflops'] > 0
    rows = [dict(impl='ours', task='lm', device='cpu', amp='none', vocab=10, tokens_per_s=1e6,
                 config=dict(emb_sz=4, n_hid=8, n_layers=2)), dict(impl='ours', task='clas', error='child exited 1')]
    bench.add_flops(rows, dict(peak, tflops=1.))
    fwd = 2 * 4 * 8 * (4 + 8) + 2 * 4 * 4 * (8 + 4) + 2 * 4 * 10
    assert rows[0]['lm_fwd_flops_per_token'] == fwd and rows[0]['share_of_matmul_peak'] == pytest.approx(3 * fwd * 1e6 / 1e12)
    assert 'tflops' not in rows[1]


def test_pretrain_speed_probe_runs_and_extrapolates(tmp_path):
    corpus = DATA / 'general-corpus' / 'valid.txt.xz'
    if not corpus.exists(): pytest.skip('needs ../shared/data/general-corpus')
    res, out = run('pretrain_speed.py', tmp_path, str(corpus), '--size', 'tiny', '--max-docs', '4', '--epochs', '2',
                   '--device', 'cpu')
    assert len(res['epoch_seconds']) == len(res['valid_perplexity']) == 2 and res['mixed_precision'] is None
    assert 1 < res['tokens_per_word'] < 2 and res['train_tokens'] > 0 and res['seconds_before_training'] > 0
    rate = res['train_tokens'] / res['epoch_seconds'][-1]
    assert res['general_corpus_epoch_hours'] == pytest.approx(26_531_314 * res['tokens_per_word'] / rate / 3600)
    assert '| 2 |' in out and 'one epoch over general-corpus/train' in out


def test_the_gpu_session_runs_every_cuda_test():
    "bench/gpu_session.sh names the test files it runs with -m cuda: every file with a CUDA test must be among them."
    script = (BENCH / 'gpu_session.sh').read_text()
    tests = Path(__file__).resolve().parent
    with_cuda = {p.name for p in tests.glob('test_*.py') if 'pytest.mark.cuda' in p.read_text() and p.name != Path(__file__).name}
    assert with_cuda and with_cuda <= {p.name for p in tests.glob('test_*.py') if f'tests/{p.name}' in script}
