"""The callbacks and metrics shipped with the engine, each driven through a real fit."""
import io
import math

import pandas as pd
import pytest
import torch

from ulmfit_learner import (AvgMetric, CSVLogger, EarlyStoppingCallback, F1Score, GradientClip, Perplexity,
                            ProgressCallback, SaveModelCallback, accuracy, error_rate)
from conftest import make_dls


def test_recorder_one_entry_per_training_batch(learner_factory):
    learn = learner_factory(metrics=[accuracy, error_rate])
    learn.fit_one_cycle(3, 1e-2)
    rec = learn.recorder
    assert len(rec.losses) == len(rec.lrs) == len(rec.moms) == len(rec.lrs_by_group) == 3 * 4
    assert all(math.isfinite(l) for l in rec.losses)
    assert rec.metric_names == ['epoch', 'train_loss', 'valid_loss', 'accuracy', 'error_rate', 'time']
    assert len(rec.values) == 3 and [v[0] for v in rec.values] == [0, 1, 2]
    for v in rec.values: assert v[3] + v[4] == pytest.approx(1.)
    df = rec.history
    assert isinstance(df, pd.DataFrame) and list(df.columns) == rec.metric_names
    # train loss of an epoch is the batch-size-weighted mean of its batch losses (all batches are 4 items here)
    assert rec.values[0][1] == pytest.approx(sum(rec.losses[:4]) / 4)
    assert rec.plot_loss() is not None and rec.plot_sched() is not None


def test_metrics_match_a_direct_computation(learner_factory):
    learn = learner_factory(metrics=[accuracy, F1Score(), F1Score('micro')], dls=make_dls(n_valid=9, bs=4))
    learn.fit(1, 1e-2)
    _, acc, f1m, f1u = learn.recorder.values[-1][2:6]
    preds, targs = learn.get_preds()
    p = preds.argmax(1)
    assert acc == pytest.approx((p == targs).float().mean().item())
    f1s = []
    for c in range(3):
        tp = ((p == c) & (targs == c)).sum().item(); fp = ((p == c) & (targs != c)).sum().item()
        fn = ((p != c) & (targs == c)).sum().item()
        if tp + fp + fn: f1s.append(2 * tp / (2 * tp + fp + fn))
    assert f1m == pytest.approx(sum(f1s) / len(f1s))
    assert f1u == pytest.approx(acc), "micro F1 equals accuracy for single-label classification"


def test_metrics_as_functions_and_objects():
    pred, targ = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]), torch.tensor([1, 1, 1])
    assert accuracy(pred, targ).item() == pytest.approx(2 / 3)
    assert error_rate(pred, targ).item() == pytest.approx(1 / 3)
    assert AvgMetric(accuracy).name == 'accuracy'
    with pytest.raises(ValueError, match='macro'): F1Score('weighted')


def test_perplexity_is_exp_of_valid_loss(learner_factory):
    learn = learner_factory(metrics=[Perplexity()])
    learn.fit(1)
    loss, ppl = learn.recorder.values[-1][2:4]
    assert ppl == pytest.approx(math.exp(loss), rel=1e-5)


def test_gradient_clip_bounds_the_norm(learner_factory):
    norms = []
    from ulmfit_learner import Callback
    class Norm(Callback):
        order = 30  # after GradientClip (order 20)
        def before_step(self, learn):
            norms.append(torch.nn.utils.get_total_norm([p.grad for p in learn.model.parameters() if p.grad is not None]).item())
    learn = learner_factory()
    learn.fit(1, 1e-2, cbs=[GradientClip(1e-3), Norm()])
    assert norms and max(norms) <= 1e-3 * 1.0001


def test_terminate_on_nan_stops_with_a_clear_warning(learner_factory):
    learn = learner_factory(dls=make_dls(n_train=200, bs=4))
    learn.model[0].weight.data.fill_(float('nan'))
    with pytest.warns(RuntimeWarning, match='NaN or infinite.*learning rate'):
        learn.fit(3, 1e-2)
    assert len(learn.recorder.values) == 0, "the fit stops during the first epoch"
    assert len(learn.recorder.losses) <= 16, "within check_every batches"


def test_save_model_keeps_and_loads_the_best(learner_factory, tmp_path):
    learn = learner_factory(metrics=[accuracy])
    cb = SaveModelCallback(monitor='valid_loss', fname='best')
    learn.fit(4, 1e-2, cbs=cb)
    vals = [v[2] for v in learn.recorder.values]
    assert cb.best == pytest.approx(min(vals)) and cb.best_epoch == vals.index(min(vals))
    assert (tmp_path / 'models' / 'best.pth').exists()
    assert learn.validate()[0] == pytest.approx(min(vals), rel=1e-5), "the best weights are loaded at the end"


def test_tracker_direction_follows_the_metric_name():
    assert SaveModelCallback('valid_loss').comp(1, 2) and SaveModelCallback('accuracy').comp(2, 1)


def test_tracker_rejects_an_unknown_column(learner_factory):
    from ulmfit_learner import CallbackError
    learn = learner_factory()
    with pytest.raises(CallbackError, match="cannot monitor 'accuracy'"):
        learn.fit(1, cbs=EarlyStoppingCallback('accuracy'))


def test_early_stopping(learner_factory, capsys):
    learn = learner_factory()
    learn.fit(10, 1e-3, cbs=EarlyStoppingCallback(min_delta=10., patience=2))  # no epoch beats the first by 10
    assert len(learn.recorder.values) == 3
    assert 'stopping early' in capsys.readouterr().out


def test_csv_logger_writes_every_epoch(learner_factory, tmp_path):
    learn = learner_factory(metrics=[accuracy])
    learn.fit(3, 1e-2, cbs=CSVLogger('logs/history.csv'))
    df = pd.read_csv(tmp_path / 'logs' / 'history.csv')
    assert list(df.columns) == learn.recorder.metric_names and len(df) == 3
    assert df['valid_loss'].tolist() == pytest.approx([v[2] for v in learn.recorder.values])


def test_progress_prints_plain_lines_in_a_log(learner_factory):
    buf = io.StringIO()
    learn = learner_factory(metrics=[accuracy])
    learn.add_cb(ProgressCallback(log_every=0., file=buf))
    learn.fit(2, 1e-2)
    out = buf.getvalue()
    lines = out.splitlines()
    assert lines[0].split() == ['epoch', 'train_loss', 'valid_loss', 'accuracy', 'time']
    assert any(l.split()[0] == '2' for l in lines[1:]), "one table row per epoch, counted from 1"
    assert 'train epoch 1/2: batch 1/4, loss' in out, "periodic progress lines when not in a terminal"
    assert '\r' not in out, "no carriage-return bars in a log"


def test_bf16_autocast_on_cpu(learner_factory):
    learn = learner_factory().to_bf16()
    seen = []
    from ulmfit_learner import Callback
    class Dtype(Callback):
        def after_pred(self, learn): seen.append(learn.pred.dtype)
    learn.fit(1, 1e-2, cbs=Dtype())
    assert torch.bfloat16 in seen and learn.scaler is None
    assert all(p.dtype == torch.float32 for p in learn.model.parameters()), "weights stay in fp32"
    learn.to_fp32()
    assert learn.mixed_precision is None
