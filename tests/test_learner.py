"""The Learner's contract: events, cancels, layer groups and their learning rates, freezing, schedules, the LR finder,
predictions in dataset order, save/load and resume."""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from ulmfit_learner import (EVENTS, Callback, CallbackError, CancelBatch, CancelEpoch, CancelFit, CancelTrain,
                            CancelValidate, CheckpointCallback, ParamScheduler, accuracy,
                            one_cycle_lr, one_cycle_mom, sched_lin, set_seed, stlr)
from conftest import make_data, make_dls


class EventLog(Callback):
    "Record every event, in order."
    def __init__(self): self.events = []
    def __getattr__(self, name):
        if name in EVENTS: return lambda learn: self.events.append(name)
        raise AttributeError(name)


BATCH = ['before_batch', 'after_pred', 'after_loss', 'before_backward', 'before_step', 'after_step', 'after_batch']
VALID_BATCH = ['before_batch', 'after_pred', 'after_loss', 'after_batch']


def expected_events(n_epoch, n_train, n_valid):
    ev = ['before_fit']
    for _ in range(n_epoch):
        ev += ['before_epoch', 'before_train', *BATCH * n_train, 'after_train',
               'before_validate', *VALID_BATCH * n_valid, 'after_validate', 'after_epoch']
    return ev + ['after_fit', 'cleanup']


# ---- events and cancels ---------------------------------------------------------------------------------------------
def test_event_order(learner_factory):
    learn = learner_factory()
    log = EventLog()
    learn.fit(2, cbs=log)
    assert log.events == expected_events(2, 4, 2)
    assert log not in learn.cbs, "callbacks passed to fit are removed afterwards"


def test_callbacks_run_by_order(learner_factory):
    calls = []
    class A(Callback):
        order = 5
        def before_fit(self, learn): calls.append('A')
    class B(Callback):
        order = -5
        def before_fit(self, learn): calls.append('B')
    learn = learner_factory()
    learn.fit(1, cbs=[A(), B()])
    assert calls == ['B', 'A']


def _cancel_at(event, exc, once=True):
    class Canceller(EventLog):
        def __init__(self): super().__init__(); self.done = False
        def __getattr__(self, name):
            if name == event:
                def f(learn):
                    self.events.append(name)
                    if not (once and self.done):
                        self.done = True
                        raise exc()
                return f
            return super().__getattr__(name)
    return Canceller()


def test_cancel_batch_skips_rest_of_batch_but_runs_after_batch(learner_factory):
    learn = learner_factory(dls=make_dls(n_train=4, n_valid=4, bs=4))  # one batch each
    cb = _cancel_at('after_loss', CancelBatch)
    w0 = [p.clone() for p in learn.model.parameters()]
    learn.fit(1, cbs=cb)
    first = cb.events[:cb.events.index('after_batch') + 1]
    assert first == ['before_fit', 'before_epoch', 'before_train', 'before_batch', 'after_pred', 'after_loss', 'after_batch']
    assert all(torch.equal(a, b) for a, b in zip(w0, learn.model.parameters())), "the cancelled step must not update"


def test_cancel_train_goes_to_validation(learner_factory):
    learn = learner_factory()
    cb = _cancel_at('before_batch', CancelTrain)
    learn.fit(1, cbs=cb)
    assert cb.events[:5] == ['before_fit', 'before_epoch', 'before_train', 'before_batch', 'after_train']
    assert 'before_validate' in cb.events and cb.events[-2:] == ['after_fit', 'cleanup']


def test_cancel_validate(learner_factory):
    learn = learner_factory()
    cb = _cancel_at('before_validate', CancelValidate, once=False)
    learn.fit(1, cbs=cb)
    i = cb.events.index('before_validate')
    assert cb.events[i:] == ['before_validate', 'after_validate', 'after_epoch', 'after_fit', 'cleanup']


def test_cancel_epoch_moves_to_next_epoch(learner_factory):
    learn = learner_factory()
    cb = _cancel_at('after_train', CancelEpoch, once=False)
    learn.fit(2, cbs=cb)
    assert cb.events.count('before_epoch') == 2 and cb.events.count('after_epoch') == 2
    assert 'before_validate' not in cb.events


def test_cancel_fit(learner_factory):
    learn = learner_factory()
    cb = _cancel_at('after_epoch', CancelFit)
    learn.fit(3, cbs=cb)
    assert cb.events.count('before_epoch') == 1 and cb.events[-2:] == ['after_fit', 'cleanup']


def test_a_failing_callback_is_named_with_its_event(learner_factory):
    class Broken(Callback):
        order = 7
        def after_loss(self, learn): raise KeyError('boom')
    cleaned = []
    class Cleaner(Callback):
        def cleanup(self, learn): cleaned.append(True)
    learn = learner_factory()
    with pytest.raises(CallbackError, match=r"Broken.*after_loss.*KeyError.*boom") as info:
        learn.fit(1, cbs=[Broken(), Cleaner()])
    assert isinstance(info.value.error, KeyError) and info.value.event == 'after_loss'
    assert cleaned == [True], "cleanup runs even when a callback fails"
    assert not any(isinstance(c, Broken) for c in learn.cbs)


def test_show_training_loop(learner_factory, capsys):
    learner_factory().show_training_loop()
    out = capsys.readouterr().out
    for ev in EVENTS: assert ev in out
    assert 'Recorder' in out


# ---- layer groups, discriminative learning rates, freezing ------------------------------------------------------------
@pytest.mark.parametrize('lr, expected', [
    (1e-3, [1e-3, 1e-3, 1e-3]),
    (slice(1e-2), [1e-3, 1e-3, 1e-2]),
    (slice(1e-4, 1e-2), [1e-4, 1e-3, 1e-2]),
    ([1., 2., 3.], [1., 2., 3.]),
])
def test_discriminative_lrs(learner_factory, lr, expected):
    learn = learner_factory()
    learn.fit(1, lr)
    got = [pg['lr'] for pg in learn.opt.param_groups]
    assert got == pytest.approx(expected, rel=1e-9)
    assert learn.recorder.lrs_by_group[0] == pytest.approx(expected)
    assert learn.recorder.lrs[0] == pytest.approx(expected[-1])


def test_one_param_group_per_layer_group(learner_factory, splitter):
    learn = learner_factory()
    learn.create_opt()
    groups = splitter(learn.model)
    assert len(learn.opt.param_groups) == 3
    for pg, g in zip(learn.opt.param_groups, groups): assert [id(p) for p in pg['params']] == [id(p) for p in g]


def test_adam_defaults(learner_factory):
    learn = learner_factory()
    learn.create_opt()
    pg = learn.opt.param_groups[0]
    assert pg['betas'] == (0.9, 0.99) and pg['weight_decay'] == 0.01
    assert isinstance(learn.opt, torch.optim.AdamW), "weight decay is decoupled"


def _n_trainable(learn): return sum(p.numel() for p in learn.model.parameters() if p.requires_grad)


def test_freeze_to_counts(learner_factory):
    learn = learner_factory()  # groups: Linear(4,8)=40, BN(16)+Linear(8,8)=72, Linear(8,3)=27; BN params: 16
    total = sum(p.numel() for p in learn.model.parameters())
    assert total == 40 + 16 + 72 + 27
    learn.freeze()
    assert _n_trainable(learn) == 27 + 16, "last group, plus BatchNorm which stays trainable"
    learn.freeze_to(-2)
    assert _n_trainable(learn) == 27 + 72 + 16
    learn.freeze_to(1)
    assert _n_trainable(learn) == 27 + 72 + 16
    learn.unfreeze()
    assert _n_trainable(learn) == total
    learn.train_bn = False
    learn.freeze()
    assert _n_trainable(learn) == 27


def test_frozen_groups_do_not_change(learner_factory):
    learn = learner_factory(wd=0.1)
    learn.freeze()
    first = learn.model[0].weight.clone()
    head = learn.model[6].weight.clone()
    learn.fit(1, 1e-2)
    assert torch.equal(first, learn.model[0].weight), "frozen weights (and weight decay) leave group 0 untouched"
    assert not torch.equal(head, learn.model[6].weight)


def test_groups_summary(learner_factory, capsys):
    learn = learner_factory()
    learn.freeze()
    learn.set_lrs(slice(1e-2))
    learn.groups_summary()
    out = capsys.readouterr().out
    assert 'partly' in out and '1.00e-02' in out and '1.00e-03' in out and '3 layer groups' in out


# ---- schedules ------------------------------------------------------------------------------------------------------
def test_fit_stlr_matches_equation_3(learner_factory):
    learn = learner_factory(dls=make_dls(n_train=40, bs=4))  # 10 batches per epoch
    learn.fit_stlr(3, slice(1e-3, 1e-2), cut_frac=0.1, ratio=32)
    T = 30
    lrs_by_group = learn.recorder.lrs_by_group
    assert len(lrs_by_group) == T
    for t, lrs in enumerate(lrs_by_group):
        for g, lo in enumerate([1e-3, 10 ** -2.5, 1e-2]):
            assert lrs[g] == pytest.approx(stlr(t, T, lo, 0.1, 32), rel=1e-12)
    assert max(learn.recorder.lrs) == pytest.approx(1e-2) and learn.recorder.lrs.index(max(learn.recorder.lrs)) == 3
    assert learn.recorder.lrs[0] == pytest.approx(1e-2 / 32)


def test_stlr_formula_values():
    T, cut = 1000, 100
    assert stlr(0, T, 0.01) == pytest.approx(0.01 / 32)
    assert stlr(cut, T, 0.01) == pytest.approx(0.01)
    assert stlr(50, T, 0.01) == pytest.approx(0.01 * (1 + 0.5 * 31) / 32)
    assert stlr(T, T, 0.01) == pytest.approx(0.01 / 32)
    p = 1 - (550 - cut) / (cut * (1 / 0.1 - 1))
    assert stlr(550, T, 0.01) == pytest.approx(0.01 * (1 + p * 31) / 32)


def test_fit_one_cycle_values(learner_factory):
    learn = learner_factory(dls=make_dls(n_train=40, bs=4))
    learn.fit_one_cycle(2, slice(1e-3, 1e-2), pct_start=0.25)
    n = 20
    lr_f, mom_f = one_cycle_lr(1e-2, 25., 1e5, 0.25), one_cycle_mom((0.95, 0.85, 0.95), 0.25)
    assert learn.recorder.lrs == pytest.approx([lr_f(i / n) for i in range(n)])
    assert learn.recorder.moms == pytest.approx([mom_f(i / n) for i in range(n)])
    assert learn.recorder.lrs[0] == pytest.approx(1e-2 / 25)
    assert learn.recorder.moms[0] == pytest.approx(0.95)
    assert learn.opt.param_groups[0]['betas'][0] == pytest.approx(mom_f((n - 1) / n)), "Adam's momentum is beta1"
    for lrs in learn.recorder.lrs_by_group:  # the ratios between groups hold all along
        assert lrs[2] / lrs[0] == pytest.approx(10.)


def test_fit_one_cycle_momentum_comes_from_the_learner(learner_factory):
    "The learner's `moms` serve every one-cycle fit not given its own; None leaves the optimizer's momentum alone."
    n = 10
    learn = learner_factory(dls=make_dls(n_train=40, bs=4))
    learn.moms = (0.9, 0.6, 0.8)
    learn.fit_one_cycle(1, 1e-2)
    mom_f = one_cycle_mom((0.9, 0.6, 0.8), 0.25)
    assert learn.recorder.moms == pytest.approx([mom_f(i / n) for i in range(n)])
    learn.fit_one_cycle(1, 1e-2, moms=(0.95, 0.85, 0.95))  # a fit's own moms win
    mom_f = one_cycle_mom((0.95, 0.85, 0.95), 0.25)
    assert learn.recorder.moms == pytest.approx([mom_f(i / n) for i in range(n)])
    learn = learner_factory(dls=make_dls(n_train=40, bs=4), moms=None)
    learn.create_opt()
    beta1 = learn.opt.param_groups[0]['betas'][0]
    learn.fit_one_cycle(1, 1e-2)
    assert set(learn.recorder.moms) == {beta1} and learn.opt.param_groups[0]['betas'][0] == beta1


@pytest.mark.parametrize('moms', [(0.9, 0.8), (0.9, 0.8, 1.2), 'fast', (0.9, 'x', 0.9), 0.9])
def test_bad_moms_are_refused(learner_factory, moms):
    with pytest.raises(ValueError, match=r'moms must be three momentums in \[0, 1\)'): learner_factory(moms=moms)
    learn = learner_factory()
    with pytest.raises(ValueError, match='moms must be three momentums'): learn.fit_one_cycle(1, 1e-2, moms=moms)
    assert learn.opt is None or learn.train_iter == 0, 'refused before training'


def test_schedules_are_pure_and_combine():
    f = sched_lin(1., 3.)
    assert [f(0.), f(0.5), f(1.)] == [1., 2., 3.]
    lr = one_cycle_lr(1., div=10., div_final=100., pct_start=0.5)
    assert lr(0.) == pytest.approx(0.1) and lr(0.5) == pytest.approx(1.) and lr(1.) == pytest.approx(0.01)
    assert lr(0.3) == lr(0.3)


def test_param_scheduler_rejects_wrong_group_count(learner_factory):
    learn = learner_factory()
    with pytest.raises(CallbackError, match="2 'lr' schedules for 3 layer groups"):
        learn.fit(1, cbs=ParamScheduler({'lr': [sched_lin(1e-3, 1e-2)] * 2}))


# ---- LR finder ------------------------------------------------------------------------------------------------------
def test_lr_find_leaves_everything_as_it_was(learner_factory):
    learn = learner_factory(dls=make_dls(n_train=64, bs=4))
    learn.fit(1, 1e-3)  # so that the optimizer has state
    learn.freeze_to(-2)
    learn.set_lrs(slice(1e-4, 1e-2))
    weights = {k: v.clone() for k, v in learn.model.state_dict().items()}
    opt_state = {k: {n: t.clone() for n, t in s.items()} for k, s in learn.opt.state_dict()['state'].items()}
    lrs = [pg['lr'] for pg in learn.opt.param_groups]
    req = [p.requires_grad for p in learn.model.parameters()]
    rng = torch.get_rng_state()
    values = list(learn.recorder.values)

    res = learn.lr_find(num_it=30, show_plot=True)

    assert {k: v for k, v in learn.model.state_dict().items()}.keys() == weights.keys()
    assert all(torch.equal(weights[k], v) for k, v in learn.model.state_dict().items())
    new_state = learn.opt.state_dict()['state']
    assert all(torch.equal(opt_state[k][n], t) for k, s in new_state.items() for n, t in s.items())
    assert [pg['lr'] for pg in learn.opt.param_groups] == lrs
    assert [p.requires_grad for p in learn.model.parameters()] == req
    assert torch.equal(torch.get_rng_state(), rng)
    assert learn.recorder.values == values
    assert 1e-7 <= res.valley <= 10
    lrs_swept, losses = learn.lr_find_results
    assert lrs_swept[0] == pytest.approx(1e-7) and all(b > a for a, b in zip(lrs_swept, lrs_swept[1:]))


def test_lr_find_stops_on_divergence(learner_factory):
    learn = learner_factory(dls=make_dls(n_train=400, bs=4))
    learn.lr_find(start_lr=1e-3, end_lr=1e6, num_it=100, show_plot=False)
    lrs, losses = learn.lr_find_results
    assert len(lrs) < 100, "the sweep stops once the loss blows up"


def test_lr_find_suggestions(learner_factory):
    from ulmfit_learner import minimum, steep, valley
    learn = learner_factory(dls=make_dls(n_train=400, bs=4))
    res = learn.lr_find(num_it=60, show_plot=False, suggest_funcs=(valley, minimum, steep))
    assert res._fields == ('valley', 'minimum', 'steep')
    assert all(1e-7 <= v <= 10 for v in res)


# ---- predictions ----------------------------------------------------------------------------------------------------
class ReversedSampler(torch.utils.data.Sampler):
    def __init__(self, n): self.n = n
    def __len__(self): return self.n
    def __iter__(self): return iter(range(self.n - 1, -1, -1))


@pytest.mark.parametrize('order', ['sequential', 'shuffled', 'reversed'])
def test_get_preds_dataset_order(learner_factory, order):
    ds = make_data('cls', 10, seed=3)
    kw = {'sequential': {}, 'shuffled': {'shuffle': True}, 'reversed': {'sampler': ReversedSampler(10)}}[order]
    dl = DataLoader(ds, batch_size=3, **kw)
    learn = learner_factory()
    preds, targs, losses = learn.get_preds(dl=dl, with_loss=True)
    assert torch.equal(targs, ds.tensors[1])
    learn.model.eval()
    with torch.no_grad(): expected = torch.softmax(learn.model(ds.tensors[0]), -1)
    assert torch.allclose(preds, expected, atol=1e-6)
    assert torch.allclose(losses, nn.functional.cross_entropy(expected.log(), ds.tensors[1], reduction='none'), atol=1e-5)
    assert preds.sum(1) == pytest.approx(torch.ones(10))


def test_get_preds_without_targets(learner_factory):
    ds = torch.utils.data.TensorDataset(make_data('cls', 6).tensors[0])
    learn = learner_factory()
    preds, targs = learn.get_preds(dl=DataLoader(ds, batch_size=4))
    assert preds.shape == (6, 3) and targs is None


def test_get_preds_leaves_model_mode_and_runs_no_training_callbacks(learner_factory):
    learn = learner_factory()
    learn.model.train()
    learn.get_preds()
    assert learn.model.training
    assert learn.recorder.values == []


def test_validate_returns_loss_and_metrics(learner_factory):
    learn = learner_factory(metrics=[accuracy])
    loss, acc = learn.validate()
    learn.model.eval()
    x, y = learn.dls.valid.dataset.tensors
    with torch.no_grad(): out = learn.model(x)
    assert loss == pytest.approx(nn.functional.cross_entropy(out, y).item(), rel=1e-5)
    assert acc == pytest.approx((out.argmax(1) == y).float().mean().item())


# ---- save, load, resume ---------------------------------------------------------------------------------------------
def test_save_load_roundtrip(learner_factory):
    learn = learner_factory()
    learn.fit(2, 1e-2)
    file = learn.save('stage1')
    assert file.exists() and file.name == 'stage1.pth'
    sd = {k: v.clone() for k, v in learn.model.state_dict().items()}
    opt_sd = learn.opt.state_dict()

    other = learner_factory()
    other.load('stage1')
    assert all(torch.equal(sd[k], v) for k, v in other.model.state_dict().items())
    o2 = other.opt.state_dict()
    for k, s in opt_sd['state'].items():
        for n, t in s.items(): assert torch.equal(torch.as_tensor(t), torch.as_tensor(o2['state'][k][n]))


def test_saved_file_loads_with_weights_only(learner_factory):
    learn = learner_factory()
    learn.fit(1)
    file = learn.save('x')
    state = torch.load(file, weights_only=True)
    assert {'model', 'opt', 'progress', 'rng'} <= set(state)


def _run(learner_factory, tmp_path, n_epoch=4, **kwargs):
    set_seed(7)
    learn = learner_factory(dls=make_dls(n_train=32, bs=4), path=tmp_path)
    learn.fit_one_cycle(n_epoch, slice(1e-3, 1e-2), **kwargs)
    return learn


def test_resume_after_interruption_gives_the_same_weights(learner_factory, tmp_path):
    full = _run(learner_factory, tmp_path / 'full')

    class Crash(Callback):
        def after_epoch(self, learn):
            if learn.epoch == 1: raise RuntimeError('power cut')
    with pytest.raises(CallbackError, match='power cut'):
        _run(learner_factory, tmp_path / 'cut', cbs=[CheckpointCallback('ckpt'), Crash()])
    assert (tmp_path / 'cut' / 'models' / 'ckpt.pth').exists()

    set_seed(123)  # a different process state: resuming must restore the random state itself
    resumed = learner_factory(dls=make_dls(n_train=32, bs=4), path=tmp_path / 'cut')
    resumed.fit_one_cycle(4, slice(1e-3, 1e-2), cbs=[CheckpointCallback('ckpt')], resume='ckpt')

    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), f"{k} differs after resuming"
    assert resumed.recorder.lrs == pytest.approx(full.recorder.lrs[-len(resumed.recorder.lrs):])
    assert len(resumed.recorder.values) == 4, "the resumed recorder carries the epochs run before the crash"
    assert [v[0] for v in resumed.recorder.values] == [v[0] for v in full.recorder.values]


def test_resume_rejects_a_different_fit(learner_factory, tmp_path):
    learn = _run(learner_factory, tmp_path, n_epoch=2, cbs=[CheckpointCallback('ckpt')])
    with pytest.raises(ValueError, match='cannot resume.*2 epochs'):
        learn.fit_one_cycle(3, 1e-2, resume='ckpt')


def test_get_preds_with_sequences_of_different_lengths(learner_factory):
    "A language model's last batch is shorter: predictions come back one row per position."
    class SeqModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.out = nn.Embedding(10, 4), nn.Linear(4, 10)
        def forward(self, x): return self.out(self.emb(x))
    batches = [(torch.randint(0, 10, (2, 5)), torch.randint(0, 10, (2, 5))),
               (torch.randint(0, 10, (2, 3)), torch.randint(0, 10, (2, 3)))]
    learn = learner_factory(model=SeqModel(), splitter=lambda m: [list(m.parameters())],
                            loss_func=lambda p, t, reduction='mean': nn.functional.cross_entropy(p.flatten(0, 1), t.flatten(), reduction=reduction))
    preds, targs = learn.get_preds(dl=batches, act=lambda x: x)
    assert preds.shape == (2 * 5 + 2 * 3, 10) and targs.shape == (16,)
    assert torch.equal(targs, torch.cat([batches[0][1].flatten(), batches[1][1].flatten()]))
