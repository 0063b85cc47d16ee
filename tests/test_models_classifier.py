"""The ULMFiT classifier: BPT3C chunking and gradient truncation, exact padding invariance, masked concat pooling,
layer groups and freezing through the Learner, loading a language model's encoder, and a short overfit."""
import numpy as np
import pytest
import torch
from torch import nn

from ulmfit_learner.callbacks import Recorder
from ulmfit_learner.core import DataLoaders, set_seed
from ulmfit_learner.learner import Learner
from ulmfit_learner.models.awdlstm import AWDLSTM, get_language_model
from ulmfit_learner.models.classifier import (PoolingLinearClassifier, SentenceEncoder, TextClassifier,
                                              awd_lstm_clas_split, get_text_classifier, load_encoder,
                                              masked_concat_pool)
from ulmfit_learner.optimizer import Adam
from ulmfit_learner.text.loaders import SortedDataLoader

from conftest import requires_cuda  # noqa: E402

SMALL = dict(emb_sz=16, n_hid=32)
cuda = requires_cuda
pytestmark = pytest.mark.usefixtures('one_thread')


def small_clas(vocab_sz=40, n_class=3, seq_len=4, max_len=8, **kw) -> TextClassifier:
    return get_text_classifier(AWDLSTM, vocab_sz, n_class, seq_len=seq_len, max_len=max_len, config=SMALL, **kw)


def left_pad(docs, pad=1) -> torch.Tensor:
    L = max(len(d) for d in docs)
    return torch.tensor([[pad] * (L - len(d)) + list(d) for d in docs])


# ---- padding invariance -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize('seq_len', [1, 3, 4, 7, 50])
def test_prediction_does_not_depend_on_padding(seq_len):
    set_seed(0)
    model = small_clas(seq_len=seq_len, max_len=4 * seq_len).eval()
    g = torch.Generator().manual_seed(0)
    doc = [2] + torch.randint(5, 40, (9,), generator=g).tolist()
    others = [[2] + torch.randint(5, 40, (n,), generator=g).tolist() for n in (30, 17, 10, 13)]
    with torch.no_grad():
        alone = model(torch.tensor([doc]))
        batch = model(left_pad([others[0], doc, *others[1:]]))
        batch_outputs, mask = model.encoder(left_pad([others[0], doc]))
        alone_outputs, _ = model.encoder(torch.tensor([doc]))
    assert torch.allclose(batch[1], alone[0], atol=1e-5)
    assert mask[1].sum() == 31 - 10 and not mask[0].any()
    assert torch.allclose(batch_outputs[1, -10:], alone_outputs[0], atol=1e-5)
    # each row also matches its own prediction alone
    with torch.no_grad():
        for i, d in enumerate([others[0], doc, *others[1:]]):
            assert torch.allclose(batch[i], model(torch.tensor([d]))[0], atol=1e-5)


def test_pad_inside_a_document_is_not_padding():
    enc = SentenceEncoder(AWDLSTM(40, SMALL), seq_len=3).eval()
    x = torch.tensor([[1, 1, 2, 1, 7], [2, 5, 6, 7, 8]])
    _, mask = enc(x)
    assert mask.tolist() == [[True, True, False, False, False], [False] * 5]


def test_encoder_chunks_equal_one_pass_without_padding():
    set_seed(1)
    module = AWDLSTM(40, SMALL).eval()
    x = torch.randint(2, 40, (3, 11))
    with torch.no_grad():
        module.reset()
        ref = module(x)
        out, mask = SentenceEncoder(module, seq_len=4, max_len=8)(x)
    assert out.shape == (3, 11, 16) and not mask.any()
    assert torch.allclose(out, ref, atol=1e-6)


def test_state_is_reset_between_batches():
    model = small_clas().eval()
    x = torch.randint(2, 40, (2, 9))
    with torch.no_grad(): assert torch.equal(model(x), model(x))


# ---- BPT3C gradient truncation ---------------------------------------------------------------------------------------
def test_gradient_only_through_the_last_max_len_tokens():
    set_seed(0)
    model = small_clas(vocab_sz=40, seq_len=4, max_len=8).eval()  # eval: no dropout; gradients still flow
    early, late = torch.arange(10, 22), torch.arange(22, 30)      # L = 20: chunks at 0, 4, 8 (no grad), 12, 16 (grad)
    x = torch.cat([early, late])[None].repeat(2, 1)
    model(x).sum().backward()
    grad = model.encoder.module.emb.weight.grad
    assert (grad[10:22] == 0).all()
    assert (grad[22:30].abs().sum(1) > 0).all()
    # every LSTM still gets a gradient (from the late chunks)
    assert all(rnn.module.weight_hh_l0.grad.abs().sum() > 0 for rnn in model.encoder.module.rnns)


def test_long_document_all_chunks_with_grad_when_short():
    model = small_clas(seq_len=4, max_len=100).eval()
    x = torch.arange(10, 30)[None].repeat(2, 1)
    model(x).sum().backward()
    assert (model.encoder.module.emb.weight.grad[10:30].abs().sum(1) > 0).all()


# ---- pooling and head ----------------------------------------------------------------------------------------------------
def test_masked_concat_pool():
    out = torch.tensor([[[100., -1.], [1., 2.], [3., -5.]], [[0., 0.], [-2., 4.], [-4., 2.]]])
    mask = torch.tensor([[True, False, False], [False, False, False]])
    pooled = masked_concat_pool(out, mask)
    assert pooled.shape == (2, 6)
    assert pooled[0].tolist() == [3., -5., 3., 2., 2., -1.5]  # the padded 100 is in neither max nor mean
    assert torch.allclose(pooled[1], torch.tensor([-4., 2., 0., 4., -2., 2.]))
    # padding values never matter
    out2 = out.clone(); out2[0, 0] = -1e9
    assert torch.equal(masked_concat_pool(out2, mask), pooled)


def test_head_structure_and_defaults():
    model = get_text_classifier(AWDLSTM, 40, 5, config=SMALL, drop_mult=0.5)
    layers = list(model.head.layers)
    kinds = [type(m).__name__ for m in layers]
    assert kinds == ['BatchNorm1d', 'Dropout', 'Linear', 'ReLU', 'BatchNorm1d', 'Dropout', 'Linear']
    assert layers[0].num_features == 48 and layers[2].out_features == 50 and layers[6].out_features == 5
    assert layers[1].p == pytest.approx(0.2) and layers[5].p == pytest.approx(0.1)
    assert model.encoder.seq_len == 72 and model.encoder.max_len == 72 * 20 and model.encoder.pad_idx == 1
    m2 = get_text_classifier(AWDLSTM, 40, 2, config=SMALL, lin_ftrs=[20, 10], ps=[0.3, 0.2, 0.1])
    assert [m.out_features for m in m2.head.layers if isinstance(m, nn.Linear)] == [20, 10, 2]
    with pytest.raises(ValueError, match='dropouts'): PoolingLinearClassifier([48, 50, 2], [0.1])


# ---- layer groups, freezing, loading the LM encoder ------------------------------------------------------------------------
def test_clas_split_membership():
    model = small_clas()
    groups = awd_lstm_clas_split(model)
    enc = model.encoder.module
    assert len(groups) == 5
    assert groups[0] == [enc.emb.weight]
    for g, rnn in zip(groups[1:4], enc.rnns): assert {id(p) for p in g} == {id(p) for p in rnn.parameters()}
    assert {id(p) for p in groups[4]} == {id(p) for p in model.head.parameters()}
    flat = [id(p) for g in groups for p in g]
    assert len(flat) == len(set(flat)) == len(list(model.parameters()))


def _tiny_clas_dls(bs=4):
    docs = [[2, 5, 6, 7], [2, 5, 8], [2, 6, 5, 9, 10], [2, 7, 5], [2, 11, 12, 13], [2, 12, 14], [2, 13, 11, 15, 16],
            [2, 14, 12]]
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    ids = np.concatenate(docs).astype(np.int64)
    offsets = np.cumsum([0] + [len(d) for d in docs])
    return DataLoaders(SortedDataLoader(ids, offsets, labels, bs=bs, shuffle=True, seed=0),
                       SortedDataLoader(ids, offsets, labels, bs=bs), device='cpu')


def test_freeze_counts_through_learner():
    model = get_text_classifier(AWDLSTM, 20, 2, seq_len=3, config=SMALL)
    learn = Learner(_tiny_clas_dls(), model, nn.CrossEntropyLoss(), splitter=awd_lstm_clas_split, default_cbs=False)
    groups = learn.layer_groups
    n = lambda g: sum(p.numel() for p in g)
    trainable = lambda: sum(p.numel() for p in model.parameters() if p.requires_grad)
    learn.freeze()
    assert trainable() == n(groups[4])
    learn.freeze_to(-2)
    assert trainable() == n(groups[4]) + n(groups[3])
    learn.freeze_to(-3)
    assert trainable() == n(groups[4]) + n(groups[3]) + n(groups[2])
    learn.unfreeze()
    assert trainable() == sum(p.numel() for p in model.parameters())
    learn.freeze()
    learn.fit(1)
    # a frozen fit leaves the encoder unchanged
    before = [p.detach().clone() for p in model.encoder.parameters()]
    learn.fit(1)
    assert all(torch.equal(a, b) for a, b in zip(before, model.encoder.parameters()))


def test_load_encoder_from_language_model():
    set_seed(0)
    lm = get_language_model(AWDLSTM, 40, SMALL)
    clas = small_clas()
    load_encoder(clas, lm.encoder)
    for (k, a), (k2, b) in zip(clas.encoder.module.state_dict().items(), lm.encoder.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    clas2 = small_clas()
    load_encoder(clas2, lm.encoder.state_dict())
    assert torch.equal(clas2.encoder.module.rnns[2].module.weight_hh_l0, lm.encoder.rnns[2].module.weight_hh_l0)
    with pytest.raises(RuntimeError):
        load_encoder(small_clas(vocab_sz=50), lm.encoder)  # another vocabulary size does not load silently


def test_overfit_eight_sentences_through_learner():
    set_seed(0)
    model = get_text_classifier(AWDLSTM, 20, 2, seq_len=3, config=dict(emb_sz=16, n_hid=32, n_layers=2), drop_mult=0.)
    learn = Learner(_tiny_clas_dls(), model, nn.CrossEntropyLoss(), opt_func=Adam, lr=1e-2,
                    splitter=awd_lstm_clas_split, cbs=[Recorder()], default_cbs=False)
    learn.fit(20)
    assert learn.recorder.values[-1][1] < 0.05
    preds, targs = learn.get_preds()
    assert (preds.argmax(1) == targs).all()


# ---- CUDA ------------------------------------------------------------------------------------------------------------------
@cuda
@pytest.mark.cuda
def test_classifier_on_cuda_matches_cpu():
    set_seed(0)
    model = small_clas().eval()
    x = left_pad([[2, 5, 6, 7, 8, 9, 10, 11, 12, 13], [2, 5, 6]])
    with torch.no_grad():
        ref = model(x)
        out = model.cuda()(x.cuda())
    assert torch.allclose(out.cpu(), ref, atol=1e-4)
    model.train()
    model(x.cuda()).sum().backward()
