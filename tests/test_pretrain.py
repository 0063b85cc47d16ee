"""ULMFiT stage 1: corpora read from files of every supported kind, `pretrain` to a bundle with its figures, an exact
resume after a crash mid-epoch, clear errors, and the bundle used as a pretrained model."""
import json
import lzma

import pandas as pd
import pytest
import torch

from ulmfit_learner import AWD_LSTM, Callback, CallbackError, TextDataLoaders, load_learner, read_bundle
from ulmfit_learner.pretrain import pretrain, read_corpus
from ulmfit_learner.ulmfit import language_model_learner

from conftest import DATA, requires_cuda

TINY = dict(emb_sz=16, n_hid=32, n_layers=2)
ARGS = dict(config=TINY, epochs=2, lr=1e-2, bs=8, seq_len=16, progress=False, device='cpu')
pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def questions():
    return pd.read_csv(DATA / 'trec' / 'train.csv', keep_default_na=False).text.iloc[::10].tolist()


@pytest.fixture
def corpus(questions, tmp_path):
    f = tmp_path / 'corpus.txt'
    f.write_text('\n'.join(questions), encoding='utf-8')
    return f


# ---- reading corpora ------------------------------------------------------------------------------------------------
def test_general_corpus_articles():
    docs = list(read_corpus(DATA / 'general-corpus' / 'valid.txt.xz', max_docs=3))
    assert len(docs) == 3 and all(len(d.split()) > 100 for d in docs)
    assert not any(line.startswith('= ') for d in docs for line in d.split('\n')), 'title markup removed'


def test_wikitext_tokens_file_is_read_as_articles():
    docs = list(read_corpus(DATA / 'wikitext-2-tokens-valid-test' / 'wiki.valid.tokens.xz', max_docs=2))
    assert docs[0].startswith('Homarus gammarus') and '= = Description = =' in docs[0] and len(docs) == 2


def test_lines_folders_and_csvs(tmp_path, questions):
    (tmp_path / 'd').mkdir()
    for i, q in enumerate(questions[:3]): (tmp_path / 'd' / f'{i}.txt').write_text(q, encoding='utf-8')
    assert list(read_corpus(tmp_path / 'd')) == questions[:3]
    pd.DataFrame({'body': questions[:4]}).to_csv(tmp_path / 'c.csv', index=False)
    assert list(read_corpus(tmp_path / 'c.csv', text_col='body')) == questions[:4]
    with lzma.open(tmp_path / 'c.csv.xz', 'wt', encoding='utf-8') as f: pd.DataFrame({'text': questions[:2]}).to_csv(f, index=False)
    assert list(read_corpus(tmp_path / 'c.csv.xz')) == questions[:2]
    with pytest.raises(KeyError, match="column 'text' not found.*body"): list(read_corpus(tmp_path / 'c.csv'))
    with pytest.raises(FileNotFoundError, match='no corpus'): list(read_corpus(tmp_path / 'nothing.txt'))
    (tmp_path / 'latin.txt').write_bytes('caf\xe9'.encode('latin-1'))
    with pytest.raises(ValueError, match='not valid UTF-8'): list(read_corpus(tmp_path / 'latin.txt'))


# ---- pretrain ------------------------------------------------------------------------------------------------------
def test_pretrain_writes_a_bundle_with_its_figures(corpus, tmp_path):
    learn = pretrain(corpus, tmp_path / 'lm', **ARGS)
    names = {p.name for p in (tmp_path / 'lm').iterdir()}
    assert {'loss.png', 'history.csv', 'training.json', 'vocab.json', 'tokenizer.json', 'manifest.json'} <= names
    summary = json.loads((tmp_path / 'lm' / 'training.json').read_text())
    assert summary['epochs'] == 2 and summary['mixed_precision'] is None and summary['documents'] > 400
    assert summary['corpus'] == str(corpus) and summary['valid'] is None, 'the corpus is named by its path'
    assert 1 < summary['final']['perplexity'] < len(learn.dls.vocab)
    assert (tmp_path / 'lm' / 'loss.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    history = pd.read_csv(tmp_path / 'lm' / 'history.csv')
    assert list(history.epoch) == [0, 1] and 'perplexity' in history.columns
    assert summary['final']['epoch'] == 1 and isinstance(summary['final']['epoch'], int), 'the last row of the history'
    assert read_bundle(tmp_path / 'lm').kind == 'language_model'
    assert (tmp_path / 'lm.work' / 'tokens').is_dir(), 'the token cache is in the work folder'


def test_training_json_names_the_corpus(corpus, questions, tmp_path):
    "training.json says what the model was trained on: a path (and how much of it), or the `source` given with a list."
    summary = lambda name: json.loads((tmp_path / name / 'training.json').read_text())
    pretrain(corpus, tmp_path / 'a', valid=corpus, max_docs=40, **dict(ARGS, epochs=1))
    assert summary('a')['corpus'] == f'{corpus}, its first 40 documents' and summary('a')['documents'] == 40
    assert summary('a')['valid'] == str(corpus)
    pretrain(questions[:40], tmp_path / 'b', valid=questions[40:50], source='TREC-6, 40 questions', **dict(ARGS, epochs=1))
    assert summary('b')['corpus'] == 'TREC-6, 40 questions' and summary('b')['valid'] == '10 texts'


def test_pretrain_refuses_a_bad_output_before_training_and_reads_an_iterable_once(questions, tmp_path):
    (tmp_path / 'taken').mkdir(); (tmp_path / 'taken' / 'notes.txt').write_text('mine')
    with pytest.raises(Exception, match='taken'): pretrain(iter(questions), tmp_path / 'taken', **ARGS)
    assert not (tmp_path / 'taken.work').exists(), 'refused before any tokenizing or training'
    with pytest.raises(ValueError, match='has no text'): pretrain(iter([]), tmp_path / 'x', **ARGS)


def test_pretrain_resumes_exactly_after_a_crash(corpus, tmp_path):
    class PowerCut(Callback):
        def after_batch(self, learn):
            if learn.training and learn.epoch == 1 and learn.iter == 7: raise RuntimeError('power cut')
    args = dict(ARGS, checkpoint_minutes=0)
    with pytest.raises(CallbackError, match='power cut'): pretrain(corpus, tmp_path / 'a', cbs=[PowerCut()], **args)
    assert not (tmp_path / 'a').exists(), 'no bundle from an interrupted run'
    resumed = pretrain(corpus, tmp_path / 'a', **args)
    full = pretrain(corpus, tmp_path / 'b', **args)
    for k, v in full.model.state_dict().items(): assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert resumed.recorder.values[1][1] == full.recorder.values[1][1], 'the resumed epoch has the same train loss'


@pytest.mark.parametrize('device,precision', [
    ('cpu', 'bf16'),
    pytest.param('cuda', 'bf16', marks=[pytest.mark.cuda, requires_cuda]),
    pytest.param('cuda', 'fp16', marks=[pytest.mark.cuda, requires_cuda]),
    pytest.param('cuda', 'auto', marks=[pytest.mark.cuda, requires_cuda])])
def test_mixed_precision_pretraining_resumes(corpus, tmp_path, device, precision):
    """Pretraining in mixed precision: fp16's gradient scaler is checkpointed and restored with the rest, the resumed run
    ends where an uninterrupted one does (to rounding on CUDA, whose embedding backward adds atomically), and the
    bundle's weights are float32."""
    class PowerCut(Callback):
        def after_batch(self, learn):
            if learn.training and learn.epoch == 1 and learn.iter == 5: raise RuntimeError('power cut')
    args = dict(ARGS, checkpoint_minutes=0, mixed_precision=precision, device=device)
    with pytest.raises(CallbackError, match='power cut'): pretrain(corpus, tmp_path / 'a', cbs=[PowerCut()], **args)
    resumed = pretrain(corpus, tmp_path / 'a', **args)
    full = pretrain(corpus, tmp_path / 'b', **args)
    chosen = json.loads((tmp_path / 'a' / 'training.json').read_text())['mixed_precision']
    assert chosen == (precision if precision != 'auto' else 'bf16' if torch.cuda.is_bf16_supported() else 'fp16')
    assert full.mixed_precision == {'bf16': torch.bfloat16, 'fp16': torch.float16}[chosen]
    if chosen == 'fp16': assert resumed.scaler.state_dict() == full.scaler.state_dict()
    else: assert full.scaler is None
    exact = device == 'cpu'  # CUDA: to rounding (a restart from scratch, or a lost step, would be off by far more)
    tol = dict(rtol=0, atol=0) if exact else dict(rtol=1e-2, atol=1e-3)
    for k, v in full.model.state_dict().items(): torch.testing.assert_close(resumed.model.state_dict()[k], v, **tol, msg=k)
    if exact: assert resumed.recorder.values[1][1:3] == full.recorder.values[1][1:3], "the resumed epoch's losses"
    assert {t.dtype for t in read_bundle(tmp_path / 'a').state.values()} == {torch.float32}


def test_float16_on_a_cpu_is_refused_before_any_work(corpus, tmp_path):
    with pytest.raises(ValueError, match=r"float16 mixed precision \(mixed_precision='fp16'\) needs a CUDA device.*mixed_precision='bf16'"):
        pretrain(corpus, tmp_path / 'lm', **dict(ARGS, mixed_precision='fp16'))
    assert not (tmp_path / 'lm.work').exists(), 'refused before tokenizing'
    from ulmfit_learner.recipe import lm_learner
    texts = ['a question', 'another one'] * 8
    with pytest.raises(ValueError, match=r"\(amp='fp16'\) needs a CUDA device"):
        lm_learner(texts, tmp_path / 'r', config=TINY, amp='fp16', device='cpu', min_freq=1, bs=2, seq_len=4)
    learn = lm_learner(texts, tmp_path / 'r', config=TINY, device='cpu', min_freq=1, bs=2, seq_len=4)
    with pytest.raises(ValueError, match=r"\(learn.to_fp16\(\)\) needs a CUDA device.*use learn.to_bf16\(\)"):
        learn.to_fp16()
    assert learn.mixed_precision is None


def test_pretrain_refuses_to_resume_another_run(corpus, tmp_path):
    """A checkpoint of a call with other arguments or another corpus is refused, naming the difference, rather than
    trained on with the new ones; resume=False starts over."""
    pretrain(corpus, tmp_path / 'lm', **dict(ARGS, epochs=1))
    with pytest.raises(ValueError, match=r'cannot resume.*\(epochs: 1 there, 2 here\).*resume=False'):
        pretrain(corpus, tmp_path / 'lm', **ARGS)
    with pytest.raises(ValueError, match=r'cannot resume.*\(lr: 0.01 there, 0.02 here\)'):
        pretrain(corpus, tmp_path / 'lm', **dict(ARGS, epochs=1, lr=2e-2))  # the same number of batches, another lr
    other = tmp_path / 'other.txt'
    other.write_text(corpus.read_text(encoding='utf-8').lower(), encoding='utf-8')
    with pytest.raises(ValueError, match=r"cannot resume.*data: '[0-9a-f]{64}' there"):
        pretrain(other, tmp_path / 'lm', **dict(ARGS, epochs=1))
    pretrain(corpus, tmp_path / 'lm', resume=False, **ARGS)  # starting over is allowed
    record = json.loads((tmp_path / 'lm.work' / 'models' / 'checkpoints.json').read_text(encoding='utf-8'))
    assert record['epochs'] == 2 and record['lr'] == 1e-2


def test_a_checkpoint_without_a_record_still_resumes(corpus, tmp_path, capsys):
    "A checkpoint written before the library kept a record of the arguments resumes as it did then, and gets one."
    class PowerCut(Callback):
        def after_batch(self, learn):
            if learn.training and learn.epoch == 1 and learn.iter == 3: raise RuntimeError('power cut')
    args = dict(ARGS, checkpoint_minutes=0)
    full = pretrain(corpus, tmp_path / 'full', **args)
    with pytest.raises(CallbackError, match='power cut'): pretrain(corpus, tmp_path / 'a', cbs=[PowerCut()], **args)
    (tmp_path / 'a.work' / 'models' / 'checkpoints.json').unlink()
    capsys.readouterr()
    resumed = pretrain(corpus, tmp_path / 'a', **args)
    assert 'pretrain: resuming from' in capsys.readouterr().out, 'not started over'
    for k, v in full.model.state_dict().items(): assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert (tmp_path / 'a.work' / 'models' / 'checkpoints.json').exists()


def test_pretrain_bad_input(tmp_path, corpus):
    (tmp_path / 'empty.txt').write_text('\n\n', encoding='utf-8')
    with pytest.raises(ValueError, match='has no text'): pretrain(tmp_path / 'empty.txt', tmp_path / 'x', **ARGS)
    with pytest.raises(ValueError, match='mixed_precision'): pretrain(corpus, tmp_path / 'y', mixed_precision='fp8', **ARGS)
    with pytest.raises(ValueError, match='schedule'): pretrain(corpus, tmp_path / 'z', schedule='cosine', **ARGS)
    for clip in (0, -1., float('nan'), float('inf'), 'x', True):
        with pytest.raises(ValueError, match='clip must be a positive number'): pretrain(corpus, tmp_path / 'c', clip=clip, **ARGS)
    assert not (tmp_path / 'c.work').exists(), 'refused before anything was written'


def test_pretrain_clips_the_gradients(corpus, tmp_path):
    norms = []
    class Norm(Callback):
        order = 30  # after GradientClip
        def before_step(self, learn):
            grads = [p.grad for p in learn.model.parameters() if p.grad is not None]
            norms.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())
    pretrain(corpus, tmp_path / 'lm', clip=1e-3, cbs=[Norm()], **dict(ARGS, epochs=1))
    assert norms and max(norms) <= 1e-3 * (1 + 1e-4)
    assert json.loads((tmp_path / 'lm' / 'training.json').read_text())['clip'] == 1e-3


def test_backward_pretraining_feeds_a_backward_model(corpus, questions, tmp_path, monkeypatch):
    pretrain(corpus, tmp_path / 'home' / 'pretrained' / 'bwd', backwards=True, valid=corpus, **dict(ARGS, epochs=1))
    monkeypatch.setenv('ULMFIT_HOME', str(tmp_path / 'home'))
    dls = TextDataLoaders.from_df(pd.DataFrame({'text': questions}), text_col='text', is_lm=True, backwards=True, seed=0,
                                  bs=8, seq_len=16, progress=False)
    learn = language_model_learner(dls, AWD_LSTM, pretrained=True, path=tmp_path)
    assert learn.pretrained_coverage == 1.0 and learn.dls.text_block.backwards
    assert load_learner(tmp_path / 'home' / 'pretrained' / 'bwd').dls.text_block.backwards
