"""The `ulmfit` command: every subcommand end to end on a small TREC-6 slice (a tiny AWD-LSTM, one epoch), the demo,
each subcommand's --help, and bad input (one line on stderr, a non-zero exit status)."""
import contextlib
import io
import importlib
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from ulmfit_learner import CheckpointCallback, load_learner, pretrained_vocab, read_bundle
# the module where the fits get their CheckpointCallback (`ulmfit_learner.pretrain` is also the name of a function)
fits = importlib.import_module('ulmfit_learner.pretrain')
from ulmfit_learner.cli import main, model_folder, read_texts
from ulmfit_learner.recipe import RECIPE_STEPS, trec6

COMMANDS = ['demo', 'pretrain', 'finetune-lm', 'train', 'predict', 'evaluate', 'export']
SIZES = ['--emb-sz', '16', '--n-hid', '32', '--n-layers', '1']
FAST = ['--bs', '16', '--seq-len', '20', '--device', 'cpu']
TEXTS = ['Who wrote Hamlet ?', 'How far is the moon from the Earth ?', 'What does NASA stand for ?']


def run(*argv) -> tuple[int, str, str]:
    "`main(argv)` in this process: its exit status, standard output and standard error."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope='module', autouse=True)
def _one_thread(one_thread_module):
    "Tiny models run fastest on one thread; the module's fixtures train, so the thread count is set for the module."


@pytest.fixture(scope='module')
def data(tmp_path_factory) -> Path:
    "300 questions as a text corpus (one per line), 300 others as a labelled CSV, 100 test questions as a CSV."
    d = tmp_path_factory.mktemp('trec6')
    train = trec6('train')
    (d / 'corpus.txt').write_text('\n'.join(train.text[:300]) + '\n', encoding='utf-8')
    train[300:600].to_csv(d / 'train.csv', index=False)
    trec6('test')[:100].to_csv(d / 'test.csv', index=False)
    return d


@pytest.fixture(scope='module')
def pretrained(data):
    "`ulmfit pretrain` on the text corpus: (the model folder, standard output)."
    status, out, err = run('pretrain', data / 'corpus.txt', '--out', data / 'pretrained', '--min-freq', '1', *SIZES, *FAST)
    assert status == 0, err
    return data / 'pretrained', out


@pytest.fixture(scope='module')
def trained(data, pretrained):
    "`ulmfit train` from the pretrained model, with the corpus as unlabelled text: (the run folder, standard output)."
    status, out, err = run('train', data / 'train.csv', '--out', data / 'run', '--unlabelled', data / 'corpus.txt',
                           '--pretrained', pretrained[0], '--lm-epochs', '1', '--clas-epochs', '1', *FAST)
    assert status == 0, err
    return data / 'run', out


# ---- reading corpora ---------------------------------------------------------------------------------------------------
def test_read_texts_from_a_text_file_a_folder_and_a_csv(tmp_path):
    (tmp_path / 'wiki.txt').write_text(' = Title = \n\nA paragraph .\n \nAnother .\n', encoding='utf-8')
    assert read_texts(tmp_path / 'wiki.txt') == ['Title\n\nA paragraph .\n \nAnother .'], "a WikiText-style article"
    (tmp_path / 'lines.txt').write_text('A line .\n\nAnother .\n', encoding='utf-8')
    assert read_texts(tmp_path / 'lines.txt') == ['A line .', 'Another .'], "each non-empty line"
    assert read_texts(tmp_path / 'lines.txt', max_docs=1) == ['A line .']
    (tmp_path / 'docs').mkdir()
    (tmp_path / 'docs' / 'b.txt').write_text('second\n\ndocument', encoding='utf-8')
    (tmp_path / 'docs' / 'a.txt').write_text('first', encoding='utf-8')
    assert read_texts(tmp_path / 'docs') == ['first', 'second\n\ndocument'], "each file, in name order"
    pd.DataFrame({'body': ['one', '', 'two'], 'label': ['a', 'b', 'a']}).to_csv(tmp_path / 'c.csv', index=False)
    assert read_texts(tmp_path / 'c.csv', text_col='body') == ['one', 'two'], "a column, empty cells dropped"
    with pytest.raises(KeyError, match=r"has no column 'text' \(its columns: \['body', 'label'\]\); .* --text-col"):
        read_texts(tmp_path / 'c.csv')


# ---- the life cycle ----------------------------------------------------------------------------------------------------
def test_pretrain_writes_a_loadable_language_model(pretrained):
    folder, out = pretrained
    lines = out.splitlines()
    header = next(i for i, l in enumerate(lines) if 'perplexity' in l and 'epoch' in l)  # the per-epoch table
    ppl = float(out.split('validation perplexity:')[1].split()[0])
    lm = load_learner(folder, device='cpu')
    assert lm.dls.is_lm and lm.model_spec['config']['emb_sz'] == 16 and lm.model_spec['config']['n_layers'] == 1
    valid_loss = float(lines[header + 1].split()[2])  # epoch, train_loss, valid_loss, accuracy, perplexity, time
    assert ppl == pytest.approx(math.exp(valid_loss), rel=1e-3)
    assert isinstance(lm.predict('What is', n_words=3, seed=0), str)
    summary = json.loads((folder / 'training.json').read_text())
    assert summary['corpus'] == str(folder.parent / 'corpus.txt'), 'training.json names the file read, not "N texts"'


def test_finetune_lm_from_the_pretrained_model(data, pretrained, tmp_path):
    status, out, err = run('finetune-lm', data / 'train.csv', '--pretrained', pretrained[0], '--out', tmp_path / 'lm',
                           '--epochs', '1', *FAST)
    assert status == 0, err
    assert f'pretrained model {pretrained[0]}: ' in out and 'have pretrained vectors' in out, "the coverage"
    assert out.count('train_loss') == 2, "an epoch on the embedding, then one of all layers"
    lm = load_learner(tmp_path / 'lm', device='cpu')
    assert lm.dls.is_lm and lm.model_spec['config']['n_hid'] == 32, "the pretrained model's sizes"


def test_pretrained_by_name_in_ulmfit_home(data, pretrained, tmp_path, monkeypatch):
    "--pretrained NAME: a bundle in $ULMFIT_HOME/pretrained, as language_model_learner(pretrained='NAME') finds it."
    monkeypatch.setenv('ULMFIT_HOME', str(tmp_path / 'home'))
    shutil.copytree(pretrained[0], tmp_path / 'home' / 'pretrained' / 'trec-fwd')
    status, out, err = run('finetune-lm', data / 'corpus.txt', '--pretrained', 'trec-fwd', '--out', tmp_path / 'lm',
                           '--epochs', '1', '--max-docs', '100', *FAST)
    assert status == 0, err
    assert f"pretrained model {tmp_path / 'home' / 'pretrained' / 'trec-fwd'}: " in out


def test_train_backwards(data, tmp_path, capsys):
    "--backwards: the language model and the classifier read the text last token first; predict reads it the same way."
    status, out, err = run('train', data / 'train.csv', '--out', tmp_path / 'run', '--backwards', '--lm-epochs', '1',
                           '--clas-epochs', '1', *SIZES, *FAST)
    assert status == 0, err
    for part in ('classifier', 'lm'):
        assert load_learner(tmp_path / 'run' / part, device='cpu').dls.text_block.backwards, part
    assert main(['predict', str(tmp_path / 'run'), *TEXTS]) == 0
    assert pd.read_csv(io.StringIO(capsys.readouterr().out)).text.tolist() == TEXTS


def test_finetune_lm_refuses_sizes_other_than_the_pretrained_ones(data, pretrained, tmp_path, capsys):
    status = main(['finetune-lm', str(data / 'train.csv'), '--pretrained', str(pretrained[0]), '--out',
                   str(tmp_path / 'lm'), '--n-hid', '64', *FAST])
    err = capsys.readouterr().err
    assert status == 1 and err.startswith('ulmfit finetune-lm: error: ') and err.count('\n') == 1
    assert 'n_hid: 32 in the pretrained model, 64 here' in err


def test_train_writes_a_run_folder(trained):
    folder, out = trained
    assert sorted(p.name for p in folder.iterdir()) == ['classifier', 'lm', 'models']
    assert sorted(p.name for p in (folder / 'models').iterdir()) == ['best.pth', 'encoder.pth']
    assert 'Stage 2: fine-tune a language model on the 300 labelled texts and 300 unlabelled ones' in out
    assert 'Stage 3' in out and out.count('train_loss') == 4, "LM: embedding then all; classifier: unfreezing, then all"
    acc = float(out.split('final validation accuracy:')[1].split()[0])
    last_row = [l for l in out.splitlines() if l.strip()[:1].isdigit()][-1].split()  # epoch, losses, accuracy, time
    assert acc == pytest.approx(float(last_row[3]), abs=1e-4), "the last epoch's accuracy"
    learn = load_learner(folder / 'classifier', device='cpu')
    assert learn.classes == ['ABBR', 'DESC', 'ENTY', 'HUM', 'LOC', 'NUM']
    lm_vocab = load_learner(folder / 'lm', device='cpu').dls.vocab
    assert learn.dls.vocab == lm_vocab.extend(pretrained_vocab(folder.parent / 'pretrained')), \
        "the language model's vocabulary, then the pretrained one's (--extend-vocab classifier, the default)"


def test_a_run_folder_stands_for_its_models(trained):
    "predict/evaluate/export take a run folder's classifier; --pretrained takes its language model."
    folder = trained[0]
    assert model_folder(folder) == folder / 'classifier' and model_folder(folder, 'lm') == folder / 'lm'
    assert model_folder(folder / 'lm') == folder / 'lm' and model_folder(folder / 'nope') == folder / 'nope'


def _read(out: str, fmt: str) -> pd.DataFrame:
    if fmt == 'csv': return pd.read_csv(io.StringIO(out), keep_default_na=False)
    return pd.DataFrame([json.loads(l) for l in out.splitlines()])


@pytest.mark.parametrize('fmt', ['csv', 'jsonl'])
@pytest.mark.parametrize('source', ['args', 'file', 'csv'])
def test_predict_one_row_per_text_in_input_order(trained, tmp_path, capsys, source, fmt):
    folder = trained[0]
    if source == 'args': inputs = TEXTS
    elif source == 'file':
        (tmp_path / 'texts.txt').write_text('\n'.join(TEXTS[:2]) + '\n\n' + TEXTS[2] + '\n', encoding='utf-8')
        inputs = ['--file', tmp_path / 'texts.txt']  # the empty line is skipped
    else:
        pd.DataFrame({'id': [7, 8, 9], 'text': TEXTS}).to_csv(tmp_path / 'texts.csv', index=False)
        inputs = ['--csv', tmp_path / 'texts.csv']
    assert main(['predict', str(folder), *map(str, inputs), '--format', fmt]) == 0
    captured = capsys.readouterr()
    assert captured.err == ''
    rows = _read(captured.out, fmt)
    learn = load_learner(folder / 'classifier', device='cpu')
    probs = [f'prob_{c}' for c in learn.classes]
    assert list(rows.columns) == ['text', 'label', 'probability', *probs]
    assert rows.text.tolist() == TEXTS, "input order"
    assert rows[probs].sum(axis=1).tolist() == pytest.approx([1.] * 3, abs=1e-5)
    assert rows.label.isin(learn.classes).all() and rows.probability.tolist() == rows[probs].max(axis=1).tolist()
    expected = learn.predict(TEXTS)
    assert rows.label.tolist() == [label for label, _, _ in expected]
    assert torch.allclose(torch.tensor(rows[probs].to_numpy()), torch.stack([p for *_, p in expected]).double(), atol=1e-6)


def test_predict_with_a_multi_label_classifier(tmp_path, capsys):
    "A multi-label classifier (made in Python) gives the labels over 0.5, joined by ';', and every class's probability."
    from ulmfit_learner import AWDLSTM, TextDataLoaders, text_classifier_learner
    df = pd.DataFrame({'text': ['a cat and a dog', 'a dog', 'a cat', 'a bird'] * 4, 'label': ['cat;dog', 'dog', 'cat', 'bird'] * 4})
    dls = TextDataLoaders.from_df(df, label_delim=';', valid_pct=0.25, seed=0, bs=4, min_freq=1, progress=False, device='cpu')
    text_classifier_learner(dls, AWDLSTM, config=dict(emb_sz=8, n_hid=16, n_layers=1), device='cpu').export(tmp_path / 'm')
    assert main(['predict', str(tmp_path / 'm'), 'a cat', 'a dog', '--format', 'jsonl']) == 0
    rows = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    expected = load_learner(tmp_path / 'm', device='cpu').predict(['a cat', 'a dog'])
    assert [list(r) for r in rows] == [['text', 'labels', 'prob_bird', 'prob_cat', 'prob_dog']] * 2
    assert [r['labels'] for r in rows] == [';'.join(labels) for labels, _, _ in expected]
    assert [r['prob_cat'] for r in rows] == pytest.approx([p[1].item() for *_, p in expected])


def test_predict_writes_the_output_file(trained, tmp_path, capsys):
    assert main(['predict', str(trained[0] / 'classifier'), *TEXTS, '--output', str(tmp_path / 'p.csv')]) == 0
    assert capsys.readouterr().out == ''
    assert pd.read_csv(tmp_path / 'p.csv').text.tolist() == TEXTS


def test_language_model_predict_is_reproducible_with_a_seed(trained, capsys):
    lm = trained[0] / 'lm'
    argv = ['predict', str(lm), 'What is the', 'Who was', '--n-words', '6', '--seed', '3', '--format', 'jsonl']
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert main(argv) == 0
    assert capsys.readouterr().out == first
    rows = [json.loads(l) for l in first.splitlines()]
    assert [r['text'] for r in rows] == ['What is the', 'Who was']
    assert rows[0]['generated'] == load_learner(lm, device='cpu').predict('What is the', n_words=6, seed=3)


def test_evaluate_matches_load_learner_and_get_preds(trained, data, capsys):
    test = pd.read_csv(data / 'test.csv')
    learn = load_learner(trained[0] / 'classifier', device='cpu')
    probs, targs = learn.get_preds(dl=learn.dls.test_dl(test.text, labels=test.label))
    acc = (probs.argmax(1) == targs).float().mean().item()
    assert main(['evaluate', str(trained[0]), str(data / 'test.csv'), '--json']) == 0
    report = json.loads(capsys.readouterr().out)
    assert report['accuracy'] == pytest.approx(acc) and report['error_rate'] == pytest.approx(1 - acc)
    assert report['count'] == 100 and sum(c['count'] for c in report['per_class'].values()) == 100
    assert report['per_class']['NUM']['count'] == (test.label == 'NUM').sum()
    assert report['loss'] == pytest.approx(torch.nn.functional.nll_loss(probs.log(), targs).item(), rel=1e-4)
    assert main(['evaluate', str(trained[0]), str(data / 'test.csv')]) == 0
    out = capsys.readouterr().out
    assert f'accuracy    {acc:.4f}' in out and 'count       100' in out and 'most confused' in out


def test_evaluate_a_language_model_on_a_corpus(trained, data, capsys):
    assert main(['evaluate', str(trained[0] / 'lm'), str(data / 'corpus.txt'), '--json']) == 0
    report = json.loads(capsys.readouterr().out)
    assert report['kind'] == 'language_model' and report['count'] == 300
    assert report['perplexity'] == pytest.approx(math.exp(report['loss']), rel=1e-4) and 0 <= report['accuracy'] <= 1


def test_export_a_checkpoint_a_copy_and_a_check(trained, tmp_path, capsys):
    run_dir = trained[0]
    assert main(['export', str(run_dir), '--checkpoint', 'best', '--to', str(tmp_path / 'best')]) == 0
    best = load_learner(tmp_path / 'best', device='cpu')
    saved = torch.load(run_dir / 'models' / 'best.pth', weights_only=True)['model']
    assert all(torch.equal(v, saved[k]) for k, v in best.model.state_dict().items()), "the checkpoint's weights"
    assert best.classes == load_learner(run_dir / 'classifier', device='cpu').classes, "the run's classifier"
    assert main(['export', str(run_dir), '--to', str(tmp_path / 'copy'), '--check']) == 0
    out = capsys.readouterr().out
    assert 'a classifier, every file matches its manifest' in out and 'classes: ABBR, DESC, ENTY, HUM, LOC, NUM' in out
    assert 'safetensors' in out
    original, copy = load_learner(run_dir / 'classifier', device='cpu'), load_learner(tmp_path / 'copy', device='cpu')
    assert [p.tolist() for *_, p in original.predict(TEXTS)] == [p.tolist() for *_, p in copy.predict(TEXTS)]


# ---- bad input ---------------------------------------------------------------------------------------------------------
def _tampered(trained, tmp_path) -> Path:
    folder = tmp_path / 'tampered'
    shutil.copytree(trained[0] / 'classifier', folder)
    weights = next(folder.glob('*.safetensors'))
    b = bytearray(weights.read_bytes())
    b[-1] ^= 1
    weights.write_bytes(bytes(b))
    return folder


BAD = {  # name: (argv with {data}, {run} and {tmp} to fill in, the start of the message)
    'missing file': (['train', '{tmp}/nope.csv', '--out', '{tmp}/r'], 'no such file: '),
    'missing label column': (['train', '{data}/train.csv', '--label-col', 'category', '--out', '{tmp}/r'],
                             "has no column 'category'"),
    'missing text column': (['predict', '{run}', '--csv', '{data}/train.csv', '--text-col', 'question'],
                            "has no column 'question'"),
    'missing corpus': (['pretrain', '{tmp}/nope.txt', '--out', '{tmp}/p'], 'no such file or folder: '),
    'missing column in a compressed CSV': (['finetune-lm', '{tmp}/odd.csv.gz', '--text-col', 'body', '--out', '{tmp}/lm'],
                                           "column 'body' not found"),
    'missing model': (['predict', '{tmp}/nope', 'a question'], 'no model folder at '),
    'not a model folder': (['evaluate', '{tmp}', '{data}/test.csv'], 'is not a model bundle'),
    'tampered model folder': (['predict', '{tampered}', 'a question'], 'does not match the manifest'),
    'unseen labels': (['evaluate', '{run}', '{tmp}/odd.csv'], "test labels ['SPORT'] (rows 1) do not occur"),
    'missing checkpoint': (['export', '{run}', '--checkpoint', 'nope', '--to', '{tmp}/x'], 'no saved learner at '),
    'backward loaders, forward model': (['finetune-lm', '{data}/train.csv', '--pretrained', '{run}', '--backwards',
                                         '--out', '{tmp}/lm'], 'reads text forward'),
    'float16 on a CPU': (['train', '{data}/train.csv', '--out', '{tmp}/r', '--precision', 'fp16', '--device', 'cpu'],
                         "float16 mixed precision (--precision='fp16') needs a CUDA device"),
    'float16 on a CPU, before the corpus is read': (['pretrain', '{tmp}/nope.txt', '--out', '{tmp}/p', '--precision', 'fp16',
                                                     '--device', 'cpu'], "(--precision='fp16') needs a CUDA device"),
    'output folder taken': (['pretrain', '{data}/corpus.txt', '--out', '{data}/train.csv'], 'exists and is not a model folder'),
}


@pytest.mark.parametrize('case', list(BAD))
def test_bad_input_exits_with_one_line(case, data, trained, tmp_path, capsys):
    argv, message = BAD[case]
    odd = pd.DataFrame({'text': ['Who is he ?', 'What is golf ?'], 'label': ['HUM', 'SPORT']})
    odd.to_csv(tmp_path / 'odd.csv', index=False)
    odd.to_csv(tmp_path / 'odd.csv.gz', index=False)
    fill = dict(data=data, run=trained[0], tmp=tmp_path, tampered=_tampered(trained, tmp_path) if 'tampered' in case else '')
    status = main([a.format(**fill) for a in argv])
    out, err = capsys.readouterr()
    assert status == 1, f"{case}: exit status {status}"
    assert err.startswith(f'ulmfit {argv[0]}: error: ') and err.count('\n') == 1 and message in err, err
    assert 'train_loss' not in out, "refused before any training"


@pytest.mark.parametrize('argv, message', [
    (['predict', '{run}'], 'give the texts one way: TEXT arguments, --file or --csv (got none)'),
    (['predict', '{run}', 'a text', '--file', '{data}/corpus.txt'], '(got TEXT and --file)'),
    (['predict', '{run}', 'a text', '--n-words', '3'], '--n-words: for language models only'),
    (['export', '{run}'], 'give --to DIR'),
])
def test_options_that_do_not_go_together_exit_with_status_2(argv, message, data, trained, capsys):
    assert main([a.format(data=data, run=trained[0]) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and message in err, err


def _stopped(monkeypatch, name: str) -> dict:
    "Replace `ulmfit_learner.cli.<name>` by a stand-in that keeps its keyword arguments (returned) and stops the command."
    import ulmfit_learner.cli as cli
    seen = {}
    def stop(*args, **kwargs):
        seen.update(kwargs)
        raise ValueError('stopped by the test')
    monkeypatch.setattr(cli, name, stop)
    return seen


@pytest.mark.parametrize('command, argv, expected', [
    ('train', [], 'stlr'), ('train', ['--schedule', 'one_cycle'], 'one_cycle'), ('train', ['--no-stlr'], 'constant'),
    ('finetune-lm', ['--schedule', 'one_cycle'], 'one_cycle'), ('finetune-lm', [], 'stlr'),
    ('pretrain', ['--schedule', 'constant'], 'constant'),
])
def test_schedule_options_reach_the_recipe(command, argv, expected, data, tmp_path, monkeypatch, capsys):
    "`--schedule` (and `--no-stlr`) reach the function that trains; the training itself is stopped at once."
    seen = _stopped(monkeypatch, {'train': 'ulmfit_stages', 'finetune-lm': 'fine_tune_lm', 'pretrain': 'pretrain'}[command])
    source = data / ('corpus.txt' if command == 'pretrain' else 'train.csv')
    assert main([command, str(source), '--out', str(tmp_path / 'out'), *SIZES, *FAST, *argv]) == 1
    assert 'stopped by the test' in capsys.readouterr().err and seen['schedule'] == expected


@pytest.mark.parametrize('command, name', [('train', 'ulmfit_stages'), ('finetune-lm', 'lm_learner'), ('pretrain', 'pretrain')])
def test_clip_reaches_the_recipe(command, name, data, tmp_path, monkeypatch, capsys):
    seen = _stopped(monkeypatch, name)
    source = data / ('corpus.txt' if command == 'pretrain' else 'train.csv')
    for argv, clip in ((['--clip', '0.25'], 0.25), ([], None)):
        seen.clear()
        assert main([command, str(source), '--out', str(tmp_path / 'out'), *SIZES, *FAST, *argv]) == 1
        assert 'stopped by the test' in capsys.readouterr().err and seen['clip'] == clip
    with pytest.raises(SystemExit) as e: main([command, str(source), '--out', str(tmp_path / 'out'), '--clip', '0'])
    assert e.value.code == 2 and 'must be a positive number, got 0' in capsys.readouterr().err


def test_unknown_schedule_is_a_usage_error(data, tmp_path, capsys):
    with pytest.raises(SystemExit) as e: main(['train', str(data / 'train.csv'), '--out', str(tmp_path / 'r'), '--schedule', 'cosine'])
    assert e.value.code == 2 and "invalid choice: 'cosine'" in capsys.readouterr().err


@pytest.mark.parametrize('command', COMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as e: main([command, '--help'])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f'usage: ulmfit {command}') and 'example:\n  ulmfit ' in out


# ---- the demo and the installed script -----------------------------------------------------------------------------------
def test_demo_prints_the_metrics_tables(capsys):
    assert main(['demo', '--lm-epochs', '1', '--clas-epochs', '1', '--n-docs', '500', '--pretrain-epochs', '0',
                 '--device', 'cpu']) == 0
    out = capsys.readouterr().out
    assert 'Stage 1' not in out, 'no pretraining with --pretrain-epochs 0'
    assert 'Stage 2' in out and 'perplexity' in out, "the language model's table"
    assert 'Stage 3' in out and out.count('train_loss') >= 3, "and the classifier's tables"
    assert 'final validation accuracy' in out and 'test accuracy' in out


def test_default_demo_learns_trec6(capsys):
    "The README's first command: the full demo classifies TREC-6 questions well above chance (0.23)."
    main(['demo', '--device', 'cpu'])
    out = capsys.readouterr().out
    assert 'Stage 1: pretrain a language model on 80 Wikipedia articles' in out and 'have pretrained vectors' in out
    acc = float(out.rsplit('test accuracy (the 500 official TREC-6 test questions):', 1)[1].split()[0])
    assert acc > 0.7, f"the default demo should reach a test accuracy above 0.7, got {acc}"


def test_shipped_data():
    from ulmfit_learner.pretrain import read_corpus
    from ulmfit_learner.recipe import wiki_sample
    articles = list(read_corpus(wiki_sample()))
    assert len(articles) == 80 and sum(len(a.split()) for a in articles) > 200_000 and articles[0].startswith('Algae')
    train, test = trec6('train'), trec6('test')
    assert len(train) == 5452 and len(test) == 500 and list(train.columns) == ['text', 'label']
    assert sorted(train.label.unique()) == ['ABBR', 'DESC', 'ENTY', 'HUM', 'LOC', 'NUM']


def test_command_line_entry_point(tmp_path):
    "The `ulmfit` script that `pip install` puts next to the interpreter: help, and an error's exit status and line."
    exe = Path(sys.executable).parent / 'ulmfit'
    if not exe.exists(): exe = shutil.which('ulmfit')
    if exe is None: pytest.skip('the package is not installed with its scripts')
    res = subprocess.run([str(exe), '--help'], capture_output=True, text=True)
    assert res.returncode == 0 and all(c in res.stdout for c in COMMANDS)
    res = subprocess.run([str(exe), 'predict', str(tmp_path / 'nope'), 'a question'], capture_output=True, text=True)
    assert res.returncode == 1 and res.stdout == ''
    assert res.stderr == f"ulmfit predict: error: no model folder at {tmp_path / 'nope'}\n"


def test_train_extend_vocab(data, pretrained, tmp_path):
    """--extend-vocab: the run's vocabulary (the language model's and the classifier's) is the task's with the
    pretrained one's tokens after it."""
    for name, extend in (('plain', []), ('run', ['--extend-vocab'])):
        status, out, err = run('train', data / 'train.csv', '--out', tmp_path / name, '--pretrained', pretrained[0],
                               *extend, '--lm-epochs', '1', '--clas-epochs', '1', *FAST)
        assert status == 0, err
    pre = pretrained_vocab(pretrained[0])
    lm, clas = (load_learner(tmp_path / 'run' / part, device='cpu') for part in ('lm', 'classifier'))
    plain = load_learner(tmp_path / 'plain' / 'lm', device='cpu').dls.vocab
    assert lm.dls.vocab == clas.dls.vocab == plain.extend(pre) and len(lm.dls.vocab) > len(plain)


@pytest.mark.parametrize('flag', [[], ['--extend-vocab', 'classifier'], ['--extend-vocab', 'off']])
def test_train_extend_vocab_classifier(data, pretrained, tmp_path, flag):
    """--extend-vocab classifier, the default with --pretrained: the language model keeps the task's vocabulary, the
    classifier's is it extended; 'off': the classifier keeps the language model's."""
    status, out, err = run('train', data / 'train.csv', '--out', tmp_path / 'run', '--pretrained', pretrained[0],
                           *flag, '--lm-epochs', '1', '--clas-epochs', '1', *FAST)
    assert status == 0, err
    lm, clas = (load_learner(tmp_path / 'run' / part, device='cpu') for part in ('lm', 'classifier'))
    pre = pretrained_vocab(pretrained[0])
    assert any(t not in lm.dls.vocab for t in pre)
    if flag[1:] == ['off']: assert clas.dls.vocab == lm.dls.vocab and 'tokens added' not in out
    else:
        assert clas.dls.vocab == lm.dls.vocab.extend(pre)
        assert f'tokens added take the vectors of the pretrained model {pretrained[0]}' in out


def test_finetune_lm_extend_vocab(data, pretrained, tmp_path):
    status, out, err = run('finetune-lm', data / 'train.csv', '--pretrained', pretrained[0], '--extend-vocab', '--out',
                           tmp_path / 'lm', '--epochs', '1', *FAST)
    assert status == 0, err
    vocab = load_learner(tmp_path / 'lm', device='cpu').dls.vocab
    assert set(pretrained_vocab(pretrained[0])) <= set(vocab)


def test_extend_vocab_takes_classifier_for_train_only(data, pretrained, tmp_path, capsys):
    "finetune-lm has no classifier: `--extend-vocab classifier` is a usage error there, as any other value for train."
    for command, value in (('finetune-lm', 'classifier'), ('train', 'lm')):
        with pytest.raises(SystemExit) as e:
            main([command, str(data / 'train.csv'), '--out', str(tmp_path / 'r'), '--pretrained', str(pretrained[0]),
                  '--extend-vocab', value])
        assert e.value.code == 2 and value in capsys.readouterr().err
    assert not (tmp_path / 'r').exists()


@pytest.mark.parametrize('command', ['train', 'finetune-lm'])
def test_extend_vocab_without_pretrained_is_refused(command, data, tmp_path, capsys):
    assert main([command, str(data / 'train.csv'), '--out', str(tmp_path / 'r2'), '--extend-vocab', *FAST]) == 2
    assert "--extend-vocab adds the pretrained model's vocabulary" in capsys.readouterr().err
    assert not (tmp_path / 'r2').exists()


def test_vocab_from_reaches_the_recipe(data, tmp_path, monkeypatch, capsys):
    seen = _stopped(monkeypatch, 'ulmfit_stages')
    for argv, vocab_from in ((['--vocab-from', 'all'], 'all'), ([], 'train')):
        assert main(['train', str(data / 'train.csv'), '--out', str(tmp_path / 'out'), *SIZES, *FAST, *argv]) == 1
        assert 'stopped by the test' in capsys.readouterr().err and seen['vocab_from'] == vocab_from
    with pytest.raises(SystemExit) as e: main(['train', str(data / 'train.csv'), '--out', str(tmp_path / 'r'), '--vocab-from', 'test'])
    assert e.value.code == 2 and "invalid choice: 'test'" in capsys.readouterr().err


# ---- interrupted runs ---------------------------------------------------------------------------------------------
def interrupt_at(monkeypatch, step: str, epoch: int, batch: int) -> None:
    "Press Ctrl-C after training batch `batch` of `epoch` of the recipe's fit `step`."
    class Interrupting(CheckpointCallback):
        def after_batch(self, learn):
            if self.fname == step and learn.training and learn.epoch == epoch and learn.iter == batch:
                raise KeyboardInterrupt
    monkeypatch.setattr(fits, 'CheckpointCallback', Interrupting)


RESUMABLE = {'train': (['--lm-epochs', '2', '--clas-epochs', '2'], 'stage3', 'classifier'),
             'finetune-lm': (['--epochs', '2'], 'stage2', '.')}


@pytest.mark.parametrize('command', list(RESUMABLE))
def test_an_interrupted_run_goes_on_from_its_last_checkpoint(command, data, tmp_path, monkeypatch):
    """Ctrl-C in the middle of an epoch, then the same command: the model written is the one of a run never stopped,
    and the checkpoints are gone once it is written."""
    epochs, step, part = RESUMABLE[command]
    argv = lambda out: [command, data / 'train.csv', '--out', out, *epochs, '--checkpoint-minutes', '0', *SIZES, *FAST]
    assert run(*argv(tmp_path / 'full'))[0] == 0
    with monkeypatch.context() as m:
        interrupt_at(m, step, 1, 2)
        status, out, err = run(*argv(tmp_path / 'cut'))
    assert status == 130 and 'interrupted; the same command again goes on from the last checkpoint' in err
    status, out, err = run(*argv(tmp_path / 'cut'))
    assert status == 0 and f'{step}: resuming from' in out, err
    full, cut = (read_bundle(tmp_path / run_ / part).state for run_ in ('full', 'cut'))
    assert full.keys() == cut.keys() and all(torch.equal(full[k], cut[k]) for k in full)
    left = tmp_path / 'cut' / 'models' if command == 'train' else tmp_path / 'cut.work'
    assert not any((left / f'{s}.pth').exists() for s in RECIPE_STEPS) and not (left / 'checkpoints.json').exists()
    if command == 'finetune-lm': assert not left.exists(), 'the work folder goes with its checkpoints'


def test_checkpoints_of_other_arguments_are_refused(data, tmp_path, monkeypatch):
    argv = ['train', data / 'train.csv', '--out', tmp_path / 'run', '--lm-epochs', '1', '--clas-epochs', '1', *SIZES, *FAST]
    with monkeypatch.context() as m:
        interrupt_at(m, 'stage3', 0, 2)
        assert run(*argv)[0] == 130
    status, out, err = run(*argv, '--clas-lr', '0.05')
    assert status == 1 and 'other arguments (clas_lr: 0.02 there, 0.05 here)' in err and '--no-resume' in err
    status, out, err = run(*argv, '--clas-lr', '0.05', '--no-resume')
    assert status == 0 and 'resuming' not in out, err
