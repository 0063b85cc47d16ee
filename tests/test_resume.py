"""Checkpoints during an epoch (every N minutes) and exact resumption: a run killed mid-epoch and resumed from its
last checkpoint ends with bit-for-bit the weights, losses and learning rates of the run that was never stopped."""

import pandas as pd
import pytest
import torch

from ulmfit_learner import AWD_LSTM, Callback, CallbackError, CheckpointCallback, TextDataLoaders, set_seed
from ulmfit_learner.callbacks import ProgressCallback
from ulmfit_learner.ulmfit import language_model_learner

from conftest import DATA

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def trec():
    return pd.read_csv(DATA / 'trec' / 'train.csv', keep_default_na=False).iloc[::20].reset_index(drop=True)


class Crash(Callback):
    "Kill the run after training batch `at` of epoch `epoch` (as a power cut would)."
    order = 100
    def __init__(self, epoch, at): self.epoch, self.at = epoch, at
    def after_batch(self, learn):
        if learn.training and learn.epoch == self.epoch and learn.iter == self.at: raise RuntimeError('power cut')


def run(trec, path, cbs=(), resume=None, n_epoch=3):
    set_seed(0)
    dls = TextDataLoaders.from_df(trec, text_col='text', is_lm=True, valid_pct=0.1, seed=5, bs=4, seq_len=8,
                                  vary_seq_len=True, progress=False)
    learn = language_model_learner(dls, AWD_LSTM, config=dict(emb_sz=8, n_hid=16, n_layers=2), path=path, device='cpu')
    learn.remove_cb(ProgressCallback)
    learn.fit_stlr(n_epoch, 1e-2, cbs=[CheckpointCallback('ckpt', every_minutes=1e-9), *cbs], resume=resume)
    return learn


def test_resume_mid_epoch_is_exact(trec, tmp_path):
    full = run(trec, tmp_path / 'full')
    n = len(full.dls.train)
    assert n > 6
    with pytest.raises(CallbackError, match='power cut'): run(trec, tmp_path / 'cut', cbs=[Crash(1, n // 2)])
    ckpt = torch.load(tmp_path / 'cut' / 'models' / 'ckpt.pth', weights_only=True)
    assert ckpt['progress']['epoch'] == 1 and ckpt['progress']['batches_done'] == n // 2, 'saved before the crashed batch'
    resumed = run(trec, tmp_path / 'cut', resume='ckpt')
    for k, v in full.model.state_dict().items(): assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert resumed.recorder.losses == full.recorder.losses
    assert resumed.recorder.lrs == full.recorder.lrs
    assert [r[:3] for r in resumed.recorder.values] == [r[:3] for r in full.recorder.values], 'epoch 1 train loss too'


def test_checkpoints_only_as_often_as_asked(trec, tmp_path):
    saves = []
    class Count(Callback):
        order = 95
        def before_batch(self, learn): saves.append((tmp_path / 'm' / 'models' / 'ckpt.pth').exists())
    set_seed(0)
    dls = TextDataLoaders.from_df(trec, text_col='text', is_lm=True, valid_pct=0.1, seed=5, bs=4, seq_len=8, progress=False)
    learn = language_model_learner(dls, AWD_LSTM, config=dict(emb_sz=8, n_hid=16, n_layers=1), path=tmp_path / 'm',
                                   device='cpu')
    learn.remove_cb(ProgressCallback)
    learn.fit(1, 1e-3, cbs=[CheckpointCallback('ckpt', every_minutes=60), Count()])
    assert not any(saves), 'nothing saved mid-epoch when the interval has not passed'
    assert (tmp_path / 'm' / 'models' / 'ckpt.pth').exists(), 'the end-of-epoch checkpoint is still written'


def test_resume_at_an_epoch_boundary_still_works(trec, tmp_path):
    full = run(trec, tmp_path / 'full', n_epoch=2)
    with pytest.raises(CallbackError, match='power cut'): run(trec, tmp_path / 'cut', cbs=[Crash(1, 0)], n_epoch=2)
    resumed = run(trec, tmp_path / 'cut', resume='ckpt', n_epoch=2)
    for k, v in full.model.state_dict().items(): assert torch.equal(v, resumed.model.state_dict()[k]), k
