"""The ULMFiT learners: the paper's defaults, encoders saved with their vocab and config and refused when they do
not fit, and gradual unfreezing."""

import pandas as pd
import pytest
import torch

from ulmfit_learner import AWD_LSTM, Callback, TextDataLoaders, set_seed
from ulmfit_learner.callbacks import ProgressCallback
from ulmfit_learner.ulmfit import (GradualUnfreezing, bidirectional_preds, language_model_learner,
                                   text_classifier_learner)

from conftest import DATA

SMALL = dict(emb_sz=16, n_hid=32, n_layers=2)
pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def trec():
    return pd.read_csv(DATA / 'trec' / 'train.csv', keep_default_na=False).iloc[::10].reset_index(drop=True)


@pytest.fixture(scope='module')
def dls_lm(trec):
    return TextDataLoaders.from_df(trec, text_col='text', is_lm=True, valid_pct=0.1, seed=0, bs=8, seq_len=12,
                                   progress=False)


@pytest.fixture(scope='module')
def dls_clas(trec, dls_lm):
    return TextDataLoaders.from_df(trec, text_col='text', label_col='label', text_vocab=dls_lm.vocab, seed=0, bs=16,
                                   progress=False)


def quiet(learn):
    learn.remove_cb(ProgressCallback)
    return learn


def test_language_model_learner_defaults(dls_lm, tmp_path):
    learn = language_model_learner(dls_lm, AWD_LSTM, config=SMALL, drop_mult=0.3, path=tmp_path)
    learn.create_opt()
    assert learn.opt.param_groups[0]['betas'] == (0.7, 0.99), "the paper's Adam betas"
    assert len(learn.layer_groups) == 3 and learn.lr == 4e-3
    names = [type(c).__name__ for c in learn.cbs]
    assert 'ModelResetter' in names and 'RNNRegularizer' in names
    assert learn.model.encoder.config.weight_p == pytest.approx(0.5 * 0.3), "drop_mult scales every dropout"
    assert learn.model.decoder.weight is learn.model.encoder.emb_dp.emb.weight
    assert learn.moms == (0.8, 0.7, 0.8), "one cycle's beta1 stays around the paper's 0.7"


def test_text_classifier_learner_defaults(dls_clas, tmp_path):
    learn = text_classifier_learner(dls_clas, AWD_LSTM, config=SMALL, path=tmp_path)
    assert isinstance(learn.loss_func, torch.nn.CrossEntropyLoss) and learn.lr == 1e-2
    assert len(learn.layer_groups) == 4, "embedding, two LSTM layers, head"
    assert learn.model.encoder.module.config.output_p == pytest.approx(0.4 * 0.5), "drop_mult 0.5 by default"


def test_multi_label_classifier_uses_bce(trec, tmp_path):
    df = trec.assign(tags=trec.label + ';x')
    dls = TextDataLoaders.from_df(df, text_col='text', label_col='tags', label_delim=';', seed=0, bs=16, progress=False)
    learn = text_classifier_learner(dls, AWD_LSTM, config=SMALL, path=tmp_path)
    assert isinstance(learn.loss_func, torch.nn.BCEWithLogitsLoss)


def test_learners_refuse_the_wrong_loaders(dls_lm, dls_clas):
    with pytest.raises(ValueError, match='language-model loaders'): language_model_learner(dls_clas, AWD_LSTM)
    with pytest.raises(ValueError, match="classifier's loaders"): text_classifier_learner(dls_lm, AWD_LSTM)


def test_encoder_round_trip(dls_lm, dls_clas, tmp_path):
    set_seed(0)
    lm = quiet(language_model_learner(dls_lm, AWD_LSTM, config=SMALL, path=tmp_path))
    lm.fit(1, 1e-2)
    file = lm.save_encoder('enc')
    assert file == tmp_path / 'models' / 'enc.pth'
    state = torch.load(file, weights_only=True)
    assert state['vocab'] == list(dls_lm.vocab) and state['config']['emb_sz'] == 16
    clas = text_classifier_learner(dls_clas, AWD_LSTM, config=SMALL, drop_mult=0.7, path=tmp_path)
    clas.load_encoder('enc')  # other dropouts are fine
    for (k, a), b in zip(lm.model.encoder.state_dict().items(), clas.model.encoder.module.state_dict().values()):
        assert torch.equal(a, b), k


def test_encoder_with_another_vocab_or_size_is_refused(trec, dls_lm, tmp_path):
    lm = language_model_learner(dls_lm, AWD_LSTM, config=SMALL, path=tmp_path)
    lm.save_encoder('enc')
    other = TextDataLoaders.from_df(trec.iloc[::3], text_col='text', label_col='label', seed=0, bs=16, progress=False)
    with pytest.raises(ValueError, match=r"vocabulary has \d+ tokens, this learner's \d+.*text_vocab=dls_lm.vocab"):
        text_classifier_learner(other, AWD_LSTM, config=SMALL, path=tmp_path).load_encoder('enc')
    same_vocab = TextDataLoaders.from_df(trec, text_col='text', label_col='label', text_vocab=dls_lm.vocab, seed=0,
                                         bs=16, progress=False)
    with pytest.raises(ValueError, match=r"sizes differ \(emb_sz: 16 in the encoder, 24 here"):
        text_classifier_learner(same_vocab, AWD_LSTM, config=dict(SMALL, emb_sz=24), path=tmp_path).load_encoder('enc')


def test_missing_or_foreign_encoder_file(dls_clas, tmp_path):
    learn = text_classifier_learner(dls_clas, AWD_LSTM, config=SMALL, path=tmp_path)
    with pytest.raises(FileNotFoundError, match='no encoder at'): learn.load_encoder('nope')
    (tmp_path / 'models').mkdir(exist_ok=True)
    torch.save({'model': {}}, tmp_path / 'models' / 'x.pth')
    with pytest.raises(ValueError, match='not an encoder written by save_encoder'): learn.load_encoder('x')


@pytest.mark.parametrize('alpha, beta', [(2., 1.), (0., 0.)])
def test_classifier_penalizes_its_encoder_outputs(dls_clas, tmp_path, alpha, beta):
    "AR/TAR on the classifier's last-layer outputs (zero at the padding) while training; nothing with alpha = beta = 0."
    learn = quiet(text_classifier_learner(dls_clas, AWD_LSTM, config=SMALL, path=tmp_path, alpha=alpha, beta=beta))
    seen = []
    class Peek(Callback):
        order = 20  # after the RNNRegularizer
        def after_loss(self, learn):
            if learn.training: seen.append((learn.loss.item(), learn.loss_grad.item(), learn.model.last_output.detach(),
                                            learn.xb[0] == dls_clas.vocab.stoi['xxpad']))
    learn.fit(1, 1e-3, cbs=Peek())
    assert learn.model.last_output is None, "nothing kept once the model is in eval mode"
    padded = 0
    for loss, loss_grad, out, pads in seen:
        assert out.shape[:2] == pads.shape and (out[pads] == 0).all()
        padded += int(pads.any())
        ar, tar = out.pow(2).mean().item(), (out[:, 1:] - out[:, :-1]).pow(2).mean().item()
        assert loss_grad == pytest.approx(loss + alpha * ar + beta * tar, rel=1e-5)
    assert padded and (alpha == 0 or alpha * ar > 1e-6), "a batch with padding was seen, and the penalty is not nil"


def test_gradual_unfreezing(dls_clas, tmp_path):
    learn = quiet(text_classifier_learner(dls_clas, AWD_LSTM, config=SMALL, path=tmp_path))
    trainable = []
    class Watch(Callback):
        order = 0
        def before_train(self, learn):
            trainable.append([any(p.requires_grad for p in g if p.dim() > 1) for g in learn.layer_groups])
    learn.fit_stlr(5, slice(1e-3, 1e-2), cbs=[GradualUnfreezing(), Watch()])
    assert trainable == [[False, False, False, True], [False, False, True, True], [False, True, True, True],
                         [True, True, True, True], [True, True, True, True]]
    assert all(p.requires_grad for p in learn.model.parameters()), "everything trainable after the fit"


def test_fine_tune(dls_clas, tmp_path):
    learn = quiet(text_classifier_learner(dls_clas, AWD_LSTM, config=SMALL, path=tmp_path))
    frozen = []
    class Watch(Callback):
        def before_fit(self, learn): frozen.append(not learn.layer_groups[0][0].requires_grad)
    learn.fine_tune(2, 1e-2, cbs=Watch())
    assert frozen == [True, False], "first the last group alone, then everything"
    n = len(dls_clas.train)
    assert len(learn.recorder.lrs_by_group) == 2 * n, "the recorder holds the second fit"
    peak = max(range(2 * n), key=lambda i: learn.recorder.lrs_by_group[i][-1])
    lrs = learn.recorder.lrs_by_group[peak]
    assert lrs[-1] == pytest.approx(1e-2)
    for lo, hi in zip(lrs, lrs[1:]): assert hi / lo == pytest.approx(2.6), "discriminative: 2.6 between groups"


def test_bidirectional_preds(trec, dls_clas, tmp_path):
    bwd_dls = TextDataLoaders.from_df(trec, text_col='text', label_col='label', text_vocab=dls_clas.vocab, seed=0,
                                      bs=16, backwards=True, progress=False)
    set_seed(0)
    fwd = quiet(text_classifier_learner(dls_clas, AWD_LSTM, config=SMALL, path=tmp_path))
    bwd = quiet(text_classifier_learner(bwd_dls, AWD_LSTM, config=SMALL, path=tmp_path))
    fwd.fit(1, 1e-2); bwd.fit(1, 1e-2)
    probs, targs = bidirectional_preds(fwd, bwd)
    (pf, tf), (pb, _) = fwd.get_preds(), bwd.get_preds()
    assert torch.allclose(probs, (pf + pb) / 2) and torch.equal(targs, tf)
    assert torch.allclose(probs.sum(1), torch.ones(len(probs)))
    other = TextDataLoaders.from_df(trec, text_col='text', label_col='label', text_vocab=dls_clas.vocab, seed=1,
                                    bs=16, backwards=True, progress=False)  # another split: other documents
    with pytest.raises(ValueError, match='different documents or labels|same documents'):
        bidirectional_preds(fwd, quiet(text_classifier_learner(other, AWD_LSTM, config=SMALL, path=tmp_path)))
