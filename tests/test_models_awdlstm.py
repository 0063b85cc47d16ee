"""The AWD-LSTM: each regulariser in train and eval, weight-dropout round trips, hidden state, tied weights,
layer groups, AR/TAR, and a short overfit through the Learner."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ulmfit_learner.callback import Callback
from ulmfit_learner.callbacks import Recorder
from ulmfit_learner.core import DataLoaders, set_seed
from ulmfit_learner.learner import Learner
from ulmfit_learner.models.awdlstm import (AWD_LSTM, AWDLSTM, AWDLSTMConfig, EmbeddingDropout, FlattenedCrossEntropy,
                                          LanguageModel, LockedDropout, ModelResetter, RNNRegularizer, WeightDropout,
                                          awd_lstm_lm_split, get_language_model, lm_loss, make_config)
from ulmfit_learner.optimizer import Adam
from ulmfit_learner.text.loaders import LMDataLoader

from conftest import requires_cuda  # noqa: E402

SMALL = dict(emb_sz=16, n_hid=32)
cuda = requires_cuda
pytestmark = pytest.mark.usefixtures('one_thread')


def small_lm(vocab_sz=30, drop_mult=1., **kw) -> LanguageModel:
    return get_language_model(AWDLSTM, vocab_sz, {**SMALL, **kw}, drop_mult=drop_mult)


# ---- config --------------------------------------------------------------------------------------------------------
def test_config_defaults_are_the_papers():
    c = AWDLSTMConfig()
    assert (c.emb_sz, c.n_hid, c.n_layers, c.pad_token, c.bidir) == (400, 1152, 3, 1, False)
    assert (c.hidden_p, c.input_p, c.embed_p, c.weight_p, c.output_p) == (0.3, 0.4, 0.05, 0.5, 0.4)


def test_make_config_partial_and_drop_mult():
    c = make_config({'n_layers': 2, 'input_p': 0.2}, drop_mult=0.5)
    assert c.n_layers == 2 and c.emb_sz == 400
    assert c.input_p == pytest.approx(0.1) and c.hidden_p == pytest.approx(0.15) and c.output_p == pytest.approx(0.2)
    assert c.embed_p == pytest.approx(0.025) and c.weight_p == pytest.approx(0.25)
    with pytest.raises(ValueError, match='nhid'): make_config({'nhid': 3})


# ---- regularisers ----------------------------------------------------------------------------------------------------
def test_locked_dropout_train_eval_and_scaling():
    set_seed(0)
    ld = LockedDropout(0.3)
    x = torch.ones(8, 20, 50)
    y = ld(x)
    assert (y == y[:, :1]).all()  # one mask per sequence, constant over time
    assert torch.allclose(y.unique(), torch.tensor([0., 1 / 0.7]))
    assert not (y[0, 0] == y[1, 0]).all()  # sequences get different masks
    assert abs(y.mean().item() - 1) < 0.1
    ld.eval()
    assert ld(x) is x
    assert LockedDropout(0.).train()(x) is x


def test_embedding_dropout_drops_whole_words():
    set_seed(0)
    emb = nn.Embedding(50, 4)
    ed = EmbeddingDropout(emb, 0.5)
    words = torch.arange(50).repeat(3, 1)  # every word three times
    out = ed(words)
    full = emb(words)
    dropped = (out == 0).all(-1)  # (3, 50)
    assert (dropped == dropped[:1]).all()  # a word is dropped in every position or in none
    assert 5 < dropped[0].sum() < 45
    assert torch.allclose(out[~dropped], 2 * full[~dropped])
    ed.eval()
    assert torch.equal(ed(words), full)


def test_embedding_dropout_gradient_reaches_the_embedding():
    emb = nn.Embedding(10, 4)
    ed = EmbeddingDropout(emb, 0.1)
    ed(torch.tensor([[1, 2, 3]])).sum().backward()
    assert emb.weight.grad is not None and emb.weight.grad[[1, 2, 3]].abs().sum() > 0


def _lstm_and_input(bidir=False):
    set_seed(1)
    lstm = nn.LSTM(5, 6, batch_first=True, bidirectional=bidir)
    n_dir = 2 if bidir else 1
    return lstm, torch.randn(3, 7, 5), (torch.randn(n_dir, 3, 6), torch.randn(n_dir, 3, 6))


@pytest.mark.parametrize('bidir', [False, True])
def test_weight_dropout_eval_is_the_plain_lstm(bidir):
    lstm, x, hx = _lstm_and_input(bidir)
    ref, (h_ref, c_ref) = lstm(x, hx)
    wd = WeightDropout(lstm, 0.5).eval()
    out, (h, c) = wd(x, hx)
    assert torch.equal(out, ref) and torch.equal(h, h_ref) and torch.equal(c, c_ref)
    wd.train()
    out_t, _ = wd(x, hx)
    assert not torch.allclose(out_t, ref)


def test_weight_dropout_is_dropconnect_on_w_hh_only():
    lstm, x, hx = _lstm_and_input()
    wd = WeightDropout(lstm, 0.5).train()
    set_seed(5)
    out, _ = wd(x, hx)
    set_seed(5)
    w_hh = F.dropout(lstm.weight_hh_l0, 0.5, training=True)
    ref = nn.LSTM(5, 6, batch_first=True)
    with torch.no_grad():
        ref.weight_ih_l0.copy_(lstm.weight_ih_l0); ref.weight_hh_l0.copy_(w_hh)
        ref.bias_ih_l0.copy_(lstm.bias_ih_l0); ref.bias_hh_l0.copy_(lstm.bias_hh_l0)
    assert torch.allclose(out, ref(x, hx)[0], atol=1e-6)
    # the raw weight is untouched and receives the gradient
    out.sum().backward()
    assert lstm.weight_hh_l0.grad is not None and (lstm.weight_hh_l0.grad == 0).float().mean() > 0.3
    assert lstm.weight_ih_l0.grad is not None


def test_weight_dropout_keeps_parameters_registered():
    lstm, _, _ = _lstm_and_input()
    params = dict(lstm.named_parameters())
    wd = WeightDropout(lstm, 0.5)
    assert list(wd.state_dict()) == ['module.' + n for n in params]
    assert all(p is params[n.removeprefix('module.')] for n, p in wd.named_parameters())
    with pytest.raises(ValueError): WeightDropout(nn.LSTM(3, 4, num_layers=2, batch_first=True), 0.5)
    with pytest.raises(ValueError): WeightDropout(nn.LSTM(3, 4), 0.5)


def test_no_warnings_over_several_batches():
    lm = small_lm()
    loss_fn = FlattenedCrossEntropy()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        for mode in (True, True, False, True):
            lm.train(mode)
            x = torch.randint(0, 30, (4, 6))
            out = lm(x)
            if mode: loss_fn(out, x).backward()


# ---- encoder and state -------------------------------------------------------------------------------------------------
def test_state_dict_keys_stable_and_round_trip():
    set_seed(0)
    lm = small_lm()
    keys = list(lm.state_dict())
    assert 'encoder.rnns.0.module.weight_hh_l0' in keys and 'decoder.bias' in keys
    lm.train(); lm(torch.randint(0, 30, (2, 5)))  # a training pass changes no keys
    assert list(lm.state_dict()) == keys
    fresh = small_lm()
    fresh.load_state_dict(lm.state_dict())
    assert fresh.decoder.weight is fresh.encoder.emb.weight  # loading keeps the tie
    lm.eval(); fresh.eval(); lm.reset(); fresh.reset()
    x = torch.randint(0, 30, (2, 5))
    assert torch.equal(lm(x), fresh(x))


def test_device_and_dtype_moves():
    lm = small_lm().eval()
    x = torch.randint(0, 30, (2, 5))
    ref = lm(x)
    lm.to('cpu')
    assert torch.equal(lm.reset() or lm(x), ref)
    lm.double()
    out = lm(x)  # the stored float32 state is replaced by a float64 one
    assert out.dtype == torch.float64 and lm.encoder.hidden[0][0].dtype == torch.float64
    lm.reset()
    assert torch.allclose(lm(x).float(), ref, atol=1e-5)
    lm.train()
    lm(x).sum().backward()


def test_hidden_state_lazy_detached_reset_and_batch_size():
    lm = small_lm()
    enc = lm.encoder
    assert enc.hidden is None
    x = torch.randint(0, 30, (3, 5))
    lm(x)
    h = enc.hidden
    assert len(h) == 3 and [t[0].shape for t in h] == [(1, 3, 32), (1, 3, 32), (1, 3, 16)]
    assert all(not t.requires_grad and t.grad_fn is None for hc in h for t in hc)
    assert all(t.dtype == torch.float32 and t.device.type == 'cpu' for hc in h for t in hc)
    # the state carries over: the same batch twice gives different outputs in eval
    lm.eval(); lm.reset()
    a, b = lm(x), lm(x)
    assert not torch.allclose(a, b)
    lm.reset(); assert enc.hidden is None
    assert torch.equal(lm(x), a)
    # no graph across batches: backward on the second batch works after the first graph is freed
    lm.train(); lm.reset()
    lm(x).sum().backward()
    lm(x).sum().backward()
    # a smaller last batch starts a fresh state
    lm(torch.randint(0, 30, (2, 5)))
    assert enc.hidden[0][0].shape == (1, 2, 32)


def test_bidirectional_sizes():
    lm = small_lm(bidir=True)
    assert lm(torch.randint(0, 30, (2, 5))).shape == (2, 5, 30)
    assert [hc[0].shape for hc in lm.encoder.hidden] == [(2, 2, 16), (2, 2, 16), (2, 2, 8)]


def test_padding_row_is_zero_and_init_range():
    enc = AWDLSTM(100, SMALL)
    w = enc.emb.weight
    assert (w[1] == 0).all() and w.abs().max() <= 0.1
    assert enc.emb.padding_idx == 1


def test_tied_decoder_and_alias():
    lm = small_lm()
    assert lm.decoder.weight is lm.encoder.emb.weight
    assert AWD_LSTM is AWDLSTM
    ids = {id(p) for p in lm.parameters()}
    assert len(ids) == len(list(lm.parameters()))


def test_lm_split_covers_every_parameter_once():
    lm = small_lm()
    groups = awd_lstm_lm_split(lm)
    assert len(groups) == 4
    flat = [id(p) for g in groups for p in g]
    assert len(flat) == len(set(flat)) and set(flat) == {id(p) for p in lm.parameters()}
    for g, rnn in zip(groups[:3], lm.encoder.rnns): assert {id(p) for p in g} == {id(p) for p in rnn.parameters()}
    assert {id(p) for p in groups[-1]} == {id(lm.encoder.emb.weight), id(lm.decoder.bias)}


def test_paper_size_builds():
    lm = get_language_model(AWD_LSTM, 60_000).eval()
    n = sum(p.numel() for p in lm.parameters())
    assert n == 44_333_280
    assert lm(torch.randint(0, 60_000, (2, 10))).shape == (2, 10, 60_000)


# ---- loss and callbacks -------------------------------------------------------------------------------------------------
def test_lm_loss_flattens():
    logits, targ = torch.randn(2, 4, 7), torch.randint(0, 7, (2, 4))
    assert isinstance(lm_loss, nn.CrossEntropyLoss)
    assert torch.allclose(lm_loss(logits, targ), F.cross_entropy(logits.reshape(8, 7), targ.reshape(8)))


class _FakeLearn:
    def __init__(self, model, training=True):
        self.model, self.training, self.loss_grad = model, training, torch.tensor(1.)
        self.resumed_batches, self.device = 0, torch.device("cpu")


def test_rnn_regularizer_matches_hand_computation():
    lm = small_lm().train()
    lm(torch.randint(0, 30, (2, 6)))
    out, raw = lm.last_output, lm.last_raw_output
    assert out.shape == raw.shape == (2, 6, 16) and out is lm.decoder.last_output
    learn = _FakeLearn(lm)
    RNNRegularizer(alpha=2., beta=1.).after_loss(learn)
    ar = 2. * (out ** 2).mean()
    tar = 1. * ((raw[:, 1:] - raw[:, :-1]) ** 2).mean()
    assert torch.allclose(learn.loss_grad, 1 + ar + tar)
    assert learn.loss_grad.requires_grad
    learn = _FakeLearn(lm, training=False)
    RNNRegularizer().after_loss(learn)
    assert learn.loss_grad.item() == 1.
    learn = _FakeLearn(nn.Linear(2, 2))  # a model without outputs to regularise is left alone
    RNNRegularizer().after_loss(learn)
    assert learn.loss_grad.item() == 1.


def test_rnn_regularizer_fp32_with_half_outputs():
    lm = small_lm().train()
    lm(torch.randint(0, 30, (2, 6)))
    lm.encoder.last_raw_output = lm.encoder.last_raw_output.half() * 1000  # would overflow a half mean of squares
    learn = _FakeLearn(lm)
    RNNRegularizer().after_loss(learn)
    assert torch.isfinite(learn.loss_grad) and learn.loss_grad.dtype == torch.float32


def test_model_resetter_events():
    lm = small_lm()
    lm(torch.randint(0, 30, (2, 5)))
    cb = ModelResetter()
    for ev in ('before_fit', 'before_train', 'before_validate'):
        lm(torch.randint(0, 30, (2, 5)))
        getattr(cb, ev)(_FakeLearn(lm))
        assert lm.encoder.hidden is None
    cb.before_train(_FakeLearn(nn.Linear(2, 2)))  # no reset method: nothing happens


def _tiny_lm_dls():
    sents = [[2, 5, 6, 7, 8, 3], [2, 9, 10, 11, 3], [2, 12, 13, 14, 15, 16, 3], [2, 17, 18, 3], [2, 19, 20, 21, 22, 3]]
    ids = np.concatenate(sents).astype(np.int64)
    offsets = np.cumsum([0] + [len(s) for s in sents])
    return DataLoaders(LMDataLoader(ids, offsets, bs=2, seq_len=6), LMDataLoader(ids, offsets, bs=2, seq_len=6),
                       device='cpu')


def test_overfit_five_sentences_through_learner():
    set_seed(0)
    model = get_language_model(AWDLSTM, 24, dict(emb_sz=16, n_hid=32, n_layers=2), drop_mult=0.)
    learn = Learner(_tiny_lm_dls(), model, lm_loss, opt_func=Adam, lr=1e-2, splitter=awd_lstm_lm_split,
                    cbs=[Recorder(), ModelResetter(), RNNRegularizer()], default_cbs=False)
    losses = []

    class Track(Callback):
        def after_batch(self, learn):
            if learn.training: losses.append(learn.loss.item())
    learn.fit(60, cbs=Track())
    assert losses[-1] < 0.3, losses[-5:]
    assert learn.validate()[0] < 0.5  # eval mode, same text: the state carries over batches as in training


def test_freeze_trains_embedding_and_decoder():
    model = small_lm()
    learn = Learner(_tiny_lm_dls(), model, lm_loss, splitter=awd_lstm_lm_split, default_cbs=False)
    learn.freeze()
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(model.encoder.emb.weight), id(model.decoder.bias)}


# ---- CUDA ---------------------------------------------------------------------------------------------------------------
@cuda
@pytest.mark.cuda
def test_awdlstm_on_cuda_uses_cudnn():
    lm = small_lm().cuda().train()
    x = torch.randint(0, 30, (4, 8), device='cuda')
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        out = lm(x)
        lm_loss(out, x).backward()
    names = {e.key for e in prof.key_averages()}
    assert any('cudnn_rnn' in n for n in names), sorted(names)
    assert lm.encoder.hidden[0][0].is_cuda
    with warnings.catch_warnings(record=True) as w:  # the dropped weights reach cuDNN in its own flat layout
        warnings.simplefilter('always')
        for _ in range(3): lm_loss(lm(x), x).backward()
        lm.reset()
        with torch.autocast('cuda', dtype=torch.bfloat16):  # PyTorch's autocast re-flattens them itself
            for _ in range(3): lm_loss(lm(x).float(), x).backward()
        lm.reset()
    assert not [m for m in w if 'contiguous' in str(m.message)], [str(m.message) for m in w]
    rnn, outs = lm.encoder.rnns[0], []  # the flat path (CUDA's) computes what the separate tensors compute
    emb = torch.randn(4, 8, rnn.module.input_size, device='cuda')
    hx = tuple(emb.new_zeros(1, 4, rnn.module.hidden_size) for _ in range(2))
    for flat in (False, True):
        torch.manual_seed(0)
        outs.append(torch._VF.lstm(emb, hx, rnn._weights(flat), True, 1, 0., True, False, True)[0])
    assert torch.allclose(*outs, atol=1e-4)
    lm.eval(); lm.reset()
    with torch.no_grad(): a = lm(x)
    lm.cpu(); lm.reset()
    assert torch.allclose(a.cpu(), lm(x.cpu()), atol=1e-4)


def test_state_carries_over_under_autocast():
    lm = small_lm().eval()
    x = torch.randint(0, 30, (2, 5))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        a, b = lm(x), lm(x)
        assert lm.encoder.hidden[0][0].dtype == torch.float32  # stored in the embedding's dtype: it fits the next batch
        lm.reset()
        c = lm(x)
    assert torch.equal(a, c) and not torch.equal(a, b)
