"""The pieces fit together: text loaders -> AWD-LSTM language model -> its encoder in a classifier, trained through
the Learner with layer groups, freezing, STLR and the RNN callbacks (tiny sizes, real TREC-6 questions)."""
from functools import partial

import pandas as pd
import pytest
import torch

from ulmfit_learner import (AWDLSTM, Adam, Learner, ModelResetter, Perplexity, ProgressCallback, RNNRegularizer,
                            TextDataLoaders, accuracy, awd_lstm_clas_split, awd_lstm_lm_split, get_language_model,
                            get_text_classifier, lm_loss, load_encoder, set_seed)

from conftest import DATA

SMALL = dict(emb_sz=32, n_hid=64, n_layers=2)
pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def trec():
    df = pd.read_csv(DATA / 'trec' / 'train.csv', keep_default_na=False)
    return df.iloc[::6].reset_index(drop=True)  # 909 questions


def quiet(learn):
    learn.remove_cb(ProgressCallback)
    return learn


def test_language_model_then_classifier(trec, tmp_path):
    set_seed(0)
    dls_lm = TextDataLoaders.from_df(trec, text_col='text', is_lm=True, valid_pct=0.1, seed=0, bs=16, seq_len=20,
                                     progress=False)
    lm = get_language_model(AWDLSTM, len(dls_lm.vocab), config=SMALL, drop_mult=0.3)
    learn = quiet(Learner(dls_lm, lm, lm_loss, opt_func=partial(Adam, betas=(0.7, 0.99)), splitter=awd_lstm_lm_split,
                          cbs=[ModelResetter(), RNNRegularizer()], metrics=[accuracy, Perplexity()], path=tmp_path))
    assert len(learn.layer_groups) == 3  # two LSTM layers, then the embedding with the tied decoder
    before = learn.validate()[0]
    learn.freeze()  # the embedding and decoder first
    learn.fit_stlr(1, 1e-2)
    learn.unfreeze()
    learn.fit_stlr(2, slice(1e-2 / 2.6 ** 2, 1e-2))
    after, acc, ppl = learn.validate()
    assert after < before - 0.5, f"the language model learned nothing: {before:.3f} -> {after:.3f}"
    assert ppl == pytest.approx(torch.tensor(after).exp().item(), rel=1e-4) and acc > 0.1

    dls = TextDataLoaders.from_df(trec, text_col='text', label_col='label', text_vocab=dls_lm.vocab, seed=0, bs=16,
                                  progress=False)
    clas = get_text_classifier(AWDLSTM, len(dls.vocab), len(dls.classes), seq_len=20, config=SMALL, drop_mult=0.5)
    load_encoder(clas, lm.encoder)
    assert torch.equal(clas.encoder.module.emb_dp.emb.weight, lm.encoder.emb_dp.emb.weight)
    learn = quiet(Learner(dls, clas, torch.nn.CrossEntropyLoss(), opt_func=partial(Adam, betas=(0.7, 0.99)),
                          splitter=awd_lstm_clas_split, cbs=[ModelResetter()], metrics=accuracy, path=tmp_path))
    # gradual unfreezing: the head, then one more layer group per epoch, then everything
    for n in (-1, -2, -3):
        learn.freeze_to(n)
        learn.fit_stlr(1, slice(1e-2 / 2.6 ** 4, 1e-2))
    learn.unfreeze()
    learn.fit_stlr(6, 1e-2)  # a tiny encoder pretrained on 900 questions still has much to learn: no discriminative lrs here
    loss, acc = learn.validate()
    assert acc > 0.4, f"six classes, chance is about 0.23 (the largest class); got {acc:.3f}"
    preds, targs = learn.get_preds()
    labels = trec.label.iloc[dls.valid_idx].tolist()
    assert [dls.classes[i] for i in targs] == labels, "predictions come back in dataset order"
    assert (preds.argmax(1) == targs).float().mean().item() == pytest.approx(acc)
