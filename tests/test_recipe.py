"""The recipe's stages (`ulmfit_stages`, the code of `ulmfit train`): its schedules, its checkpoints and exact resume
after a crash, on a tiny model and 400 questions."""
import importlib
import json

import pytest
import torch

from ulmfit_learner import (CallbackError, CheckpointCallback, GradientClip, lm_learner, one_cycle_lr, one_cycle_mom,
                            pretrained_vocab, sched_stlr, set_seed, ulmfit_stages)
# the module where the fits get their CheckpointCallback (`ulmfit_learner.pretrain` is also the name of a function)
fits = importlib.import_module('ulmfit_learner.pretrain')
from ulmfit_learner.recipe import RECIPE_STEPS, trec6

TINY = dict(emb_sz=16, n_hid=32, n_layers=1)
pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def questions():
    return trec6('train').sample(n=400, random_state=0).reset_index(drop=True)


def stages(questions, tmp_path, **kwargs):
    return ulmfit_stages(questions, tmp_path, config=TINY, lm_epochs=1, clas_epochs=2, seq_len=20, lm_lr=1e-2,
                         clas_lr=2e-2, gradual=False, **kwargs)


def test_stlr_is_the_default(questions, tmp_path):
    lm, clas = stages(questions, tmp_path)
    for learn, lr in ((lm, 1e-2), (clas, 2e-2)):
        T = len(learn.recorder.lrs)
        f = sched_stlr(lr, T)
        assert learn.recorder.lrs == pytest.approx([f(i / T) for i in range(T)])
        assert set(learn.recorder.moms) == {0.7}, "STLR keeps the paper's beta1"


def test_one_cycle_cycles_lr_and_beta1(questions, tmp_path):
    lm, clas = stages(questions, tmp_path, schedule='one_cycle')
    for learn, lr in ((lm, 1e-2), (clas, 2e-2)):
        T = len(learn.recorder.lrs)
        f = one_cycle_lr(lr, 25., 1e5, 0.25)
        assert learn.recorder.lrs == pytest.approx([f(i / T) for i in range(T)])
        mom = one_cycle_mom((0.8, 0.7, 0.8), 0.25)  # Adam's beta1 around the paper's 0.7
        assert learn.recorder.moms == pytest.approx([mom(i / T) for i in range(T)])


def test_constant_schedule(questions, tmp_path):
    _, clas = stages(questions, tmp_path, schedule='constant', discr=False)
    assert set(clas.recorder.lrs) == {2e-2}


def test_unknown_schedule_is_refused_before_training(questions, tmp_path, capsys):
    with pytest.raises(ValueError, match="schedule must be one of 'stlr', 'one_cycle', 'constant', got 'cosine'"):
        stages(questions, tmp_path, schedule='cosine')
    assert 'Stage 2' not in capsys.readouterr().out


def test_clip_reaches_both_stages(questions, tmp_path):
    lm, clas = stages(questions, tmp_path, clip=0.5)
    for learn in (lm, clas):
        clips = [cb for cb in learn.cbs if isinstance(cb, GradientClip)]
        assert len(clips) == 1 and clips[0].max_norm == 0.5
    _, clas = stages(questions, tmp_path / 'plain')
    assert not any(isinstance(cb, GradientClip) for cb in clas.cbs), 'no clipping unless asked'


@pytest.mark.parametrize('clip', [0, -0.25, 'big'])
def test_bad_clip_is_refused_before_training(questions, tmp_path, capsys, clip):
    with pytest.raises(ValueError, match='clip must be a positive number'): stages(questions, tmp_path, clip=clip)
    assert 'Stage 2' not in capsys.readouterr().out


def test_vocab_from_all_counts_the_validation_questions(questions, tmp_path):
    """By default the vocabulary (the LM's, handed to the classifier) counts the training questions only; with
    vocab_from='all' a word that only the validation questions hold gets a row of its own."""
    qs = questions.assign(is_valid=[i % 10 == 0 for i in range(len(questions))])
    qs.loc[qs.index[qs.is_valid][:3], 'text'] += ' zyzzyva'
    for vocab_from, has in (('train', False), ('all', True)):
        lm, clas = stages(qs, tmp_path / vocab_from, valid_col='is_valid', vocab_from=vocab_from)
        assert ('zyzzyva' in lm.dls.vocab.stoi) == has and clas.dls.vocab is lm.dls.vocab
        assert not any('zyzzyva' in t for t in qs.text[~qs.is_valid]), 'in validation questions only'


def test_extend_vocab_without_a_pretrained_model_is_refused_before_training(questions, tmp_path, capsys):
    with pytest.raises(ValueError, match="extend_vocab adds a pretrained model's vocabulary.*pretrained="):
        stages(questions, tmp_path, extend_vocab=True)
    assert 'Stage 2' not in capsys.readouterr().out and not (tmp_path / 'models').exists()


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
    "A tiny language model's bundle on the 500 test questions (untrained: its vocabulary is what matters here)."
    tmp = tmp_path_factory.mktemp('pretrained')
    return lm_learner(trec6('test').text, tmp, config=TINY, seq_len=20, device='cpu').export(tmp / 'bundle')


def test_extend_vocab_classifier_extends_the_classifier_vocabulary_only(questions, pretrained, tmp_path):
    """extend_vocab='classifier': the language model keeps the task's vocabulary (its softmax the task's size); the
    classifier's is that vocabulary with the pretrained one's tokens after it. extend_vocab=True: both stages."""
    pre = pretrained_vocab(pretrained)
    lm, clas = stages(questions, tmp_path / 'clas', pretrained=pretrained, extend_vocab='classifier')
    added = [t for t in pre if t not in lm.dls.vocab]
    assert added and clas.dls.vocab == lm.dls.vocab.extend(pre)
    both_lm, both = stages(questions, tmp_path / 'both', pretrained=pretrained, extend_vocab=True)
    assert both_lm.dls.vocab == both.dls.vocab == clas.dls.vocab


def test_the_classifier_vocabulary_is_extended_by_default_with_a_pretrained_model(questions, pretrained, tmp_path):
    "extend_vocab's default: 'classifier' with a pretrained model, nothing without one; False keeps the task's."
    lm, clas = stages(questions, tmp_path / 'default', pretrained=pretrained)
    assert clas.dls.vocab == lm.dls.vocab.extend(pretrained_vocab(pretrained)) and len(clas.dls.vocab) > len(lm.dls.vocab)
    lm, clas = stages(questions, tmp_path / 'off', pretrained=pretrained, extend_vocab=False)
    assert clas.dls.vocab is lm.dls.vocab
    lm, clas = stages(questions, tmp_path / 'new')
    assert clas.dls.vocab is lm.dls.vocab


def test_unknown_extend_vocab_is_refused_before_training(questions, pretrained, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"extend_vocab='lm': use True .*'classifier'"):
        stages(questions, tmp_path, pretrained=pretrained, extend_vocab='lm')
    assert 'Stage 2' not in capsys.readouterr().out and not (tmp_path / 'models').exists()


def test_a_missing_column_is_refused_before_training(questions, tmp_path, capsys):
    "The label column is the classifier's, but its absence is found before the language model trains."
    with pytest.raises(KeyError, match=r"column 'category' not found; the data has columns \['text', 'label'\]"):
        stages(questions, tmp_path, label_col='category')
    assert 'Stage 2' not in capsys.readouterr().out and not (tmp_path / 'models').exists()


def test_extra_texts_may_be_a_generator(questions, tmp_path):
    "Unlabelled texts for the language model, given as a generator: read once for the checkpoints' record, once to train."
    lm, _ = stages(questions, tmp_path, extra_texts=(f'The zyzzyva number {i} .' for i in range(5)))
    assert 'zyzzyva' in lm.dls.vocab


def test_unknown_vocab_from_is_refused_before_training(questions, tmp_path):
    with pytest.raises(ValueError, match=r"vocab_from='valid'.*'train'.*'all'"):
        stages(questions, tmp_path, vocab_from='valid')
    assert not (tmp_path / 'models').exists()


# ---- checkpoints and resuming -------------------------------------------------------------------------------------
def crash_at(monkeypatch, step: str, epoch: int, batch: int) -> None:
    "Make the recipe's fit `step` die after training batch `batch` of `epoch` (as a power cut would)."
    class Crashing(CheckpointCallback):
        def after_batch(self, learn):
            if self.fname == step and learn.training and learn.epoch == epoch and learn.iter == batch:
                raise RuntimeError('power cut')
    monkeypatch.setattr(fits, 'CheckpointCallback', Crashing)


def full_recipe(questions, path, pretrained, **kwargs):
    "Every fit of the recipe (the pretrained model's frozen epoch, gradual unfreezing), two epochs each, from seed 0."
    set_seed(0)
    args = dict(config=TINY, lm_epochs=2, clas_epochs=2, seq_len=20, lm_lr=1e-2, clas_lr=2e-2,
                checkpoint_minutes=0)  # 0: a checkpoint before every batch
    return ulmfit_stages(questions, path, pretrained=pretrained, **{**args, **kwargs})


@pytest.fixture(scope='module')
def uninterrupted(questions, pretrained, tmp_path_factory, one_thread_module):
    "The run never stopped, with one thread as the tests' runs (other thread counts round sums differently)."
    return full_recipe(questions, tmp_path_factory.mktemp('full'), pretrained)


@pytest.mark.parametrize('step,epoch,batch', [('stage2_frozen', 0, 2), ('stage2', 1, 3), ('stage3_gradual', 1, 1),
                                              ('stage3', 0, 0), ('stage3', 1, 4)])
def test_the_recipe_resumes_exactly_after_a_crash(questions, pretrained, uninterrupted, tmp_path, monkeypatch, step,
                                                  epoch, batch):
    """Killed in any fit, mid-epoch or before a fit's first checkpoint, and called again: the same language model and
    classifier, weights and per-epoch values, as the run that was never stopped; the checkpoints are gone after it."""
    with monkeypatch.context() as m:
        crash_at(m, step, epoch, batch)
        with pytest.raises(CallbackError, match='power cut'): full_recipe(questions, tmp_path, pretrained)
    models = tmp_path / 'models'
    assert (models / 'checkpoints.json').exists()
    assert (models / f'{step}.pth').exists() == (batch > 0), 'a checkpoint before every batch but the first'
    lm, clas = full_recipe(questions, tmp_path, pretrained)
    for ours, theirs in zip((lm, clas), uninterrupted):
        for k, v in theirs.model.state_dict().items(): assert torch.equal(ours.model.state_dict()[k], v), k
        assert [r[:-1] for r in ours.recorder.values] == [r[:-1] for r in theirs.recorder.values], 'all but the time'
    assert not any((models / f'{s}.pth').exists() for s in RECIPE_STEPS) and not (models / 'checkpoints.json').exists()


def test_checkpoints_of_another_run_are_refused(questions, pretrained, tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        crash_at(m, 'stage2', 0, 2)
        with pytest.raises(CallbackError, match='power cut'): full_recipe(questions, tmp_path, pretrained)
    saved = json.loads((tmp_path / 'models' / 'checkpoints.json').read_text())
    assert saved['clas_lr'] == 2e-2 and len(saved['data']) == 64
    with pytest.raises(ValueError, match=r"other arguments \(clas_epochs: 2 there, 3 here\).*resume=False"):
        full_recipe(questions, tmp_path, pretrained, clas_epochs=3)
    other = questions.assign(text=questions.text.str.lower())
    with pytest.raises(ValueError, match=r"data: '[0-9a-f]{64}' there, '[0-9a-f]{64}' here"):
        full_recipe(other, tmp_path, pretrained)
    _, clas = full_recipe(other, tmp_path, pretrained, resume=False)  # starting over is allowed
    assert len(clas.recorder.values) == 2
