"""`ClassificationInterpretation`: its numbers against hand-computed ones, dataset order on a trained TREC-6
classifier, the texts it shows (forwards, backwards, raw), and the inputs it refuses."""
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from ulmfit_learner.callbacks import ProgressCallback
from ulmfit_learner.recipe import trec6
from ulmfit_learner.core import set_seed
from ulmfit_learner.interpret import ClassificationInterpretation, _item_ids
from ulmfit_learner.metrics import accuracy
from ulmfit_learner.models.awdlstm import AWDLSTM
from ulmfit_learner.text.data import TextDataLoaders
from ulmfit_learner.ulmfit import language_model_learner, text_classifier_learner

TINY = dict(emb_sz=16, n_hid=32, n_layers=1)
CLASSES = ['a', 'b', 'c', 'd']


def _interp(preds, targets, n_classes=4, texts=None):
    "An interpretation whose argmax is `preds` (probability 0.7 on it) and whose losses are the cross-entropy."
    preds, targets = torch.tensor(preds), torch.tensor(targets)
    probs = torch.full((len(preds), n_classes), 0.3 / (n_classes - 1))
    probs[torch.arange(len(preds)), preds] = 0.7
    losses = -probs[torch.arange(len(preds)), targets].log()
    return ClassificationInterpretation(probs, targets, losses, CLASSES[:n_classes], texts=texts)


# ---- the numbers, from tensors ---------------------------------------------------------------------------------------
def test_confusion_matrix_by_hand():
    interp = _interp(preds=[0, 1, 1, 2, 3, 3, 0, 2], targets=[0, 0, 1, 1, 2, 3, 3, 3])
    expected = np.array([[1, 1, 0, 0],   # actual a: once right, once taken for b
                         [0, 1, 1, 0],   # actual b: once right, once taken for c
                         [0, 0, 0, 1],   # actual c: taken for d
                         [1, 0, 1, 1]])  # actual d: once right, once a, once c
    cm = interp.confusion_matrix()
    assert cm.dtype.kind == 'i' and cm.shape == (4, 4)
    np.testing.assert_array_equal(cm, expected)
    assert (cm.sum(1) == np.bincount([0, 0, 1, 1, 2, 3, 3, 3])).all(), "rows are the actual classes"


def test_argmax_is_the_prediction_and_ties_take_the_first_class():
    probs = torch.tensor([[.5, .5, 0.], [.2, .3, .5]])
    interp = ClassificationInterpretation(probs, torch.tensor([1, 2]), torch.ones(2), ['x', 'y', 'z'])
    assert interp.preds.tolist() == [0, 2]
    np.testing.assert_array_equal(interp.confusion_matrix(), [[0, 0, 0], [1, 0, 0], [0, 0, 1]])


def test_accepts_numpy_and_lists():
    interp = ClassificationInterpretation(np.array([[.9, .1], [.2, .8]]), [0, 0], np.array([.1, 1.6]), ('no', 'yes'))
    np.testing.assert_array_equal(interp.confusion_matrix(), [[1, 1], [0, 0]])
    assert interp.classes == ['no', 'yes']


def test_most_confused_order_and_min_val():
    # a->b three times, c->a twice, d->c twice, b->c once
    interp = _interp(preds=[1, 1, 1, 2, 0, 0, 2, 2, 3], targets=[0, 0, 0, 1, 2, 2, 3, 3, 3])
    assert interp.most_confused() == [('a', 'b', 3), ('c', 'a', 2), ('d', 'c', 2), ('b', 'c', 1)]
    assert interp.most_confused(min_val=2) == [('a', 'b', 3), ('c', 'a', 2), ('d', 'c', 2)]
    assert interp.most_confused(min_val=4) == []
    assert all(a != p for a, p, _ in interp.most_confused()), "the diagonal is never 'confused'"


def test_top_losses_values_and_indexes():
    losses = torch.tensor([0.5, 2.0, 0.1, 2.0, 1.0])
    probs = torch.tensor([[.6, .4]] * 5)
    interp = ClassificationInterpretation(probs, torch.tensor([0, 1, 0, 1, 1]), losses, ['x', 'y'])
    top, idxs = interp.top_losses(3)
    assert idxs.tolist() == [1, 3, 4], "equal losses keep dataset order"
    assert top.tolist() == [2.0, 2.0, 1.0]
    low, low_idxs = interp.top_losses(2, largest=False)
    assert low_idxs.tolist() == [2, 0] and low.tolist() == pytest.approx([0.1, 0.5])
    assert interp.top_losses()[1].tolist() == [1, 3, 4, 0, 2], "k=None: every item"
    assert interp.top_losses(100)[1].tolist() == [1, 3, 4, 0, 2], "k larger than n: every item"
    assert len(interp.top_losses(0)[1]) == 0
    with pytest.raises(ValueError, match='k must be at least 0'): interp.top_losses(-1)


def test_show_top_losses_frame(capsys):
    interp = _interp(preds=[0, 1, 2, 0], targets=[0, 0, 2, 1], n_classes=3, texts=['w', 'x', 'y', 'z'])
    df = interp.show_top_losses(2)
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ['text', 'actual', 'predicted', 'probability', 'loss', 'index']
    assert df['index'].tolist() == [1, 3] and df.text.tolist() == ['x', 'z']
    assert df.actual.tolist() == ['a', 'b'] and df.predicted.tolist() == ['b', 'a']
    assert df.probability.tolist() == pytest.approx([0.7, 0.7])
    assert df.loss.tolist() == pytest.approx([-np.log(0.15)] * 2)
    assert 'x' in capsys.readouterr().out, "outside Jupyter the table is printed"


def test_show_top_losses_without_texts_has_no_text_column(capsys):
    df = _interp(preds=[0, 1], targets=[1, 1]).show_top_losses()
    assert list(df.columns) == ['actual', 'predicted', 'probability', 'loss', 'index'] and len(df) == 2


def test_plot_confusion_matrix():
    interp = _interp(preds=[0, 1, 1, 2], targets=[0, 0, 1, 2], n_classes=3)
    fig = interp.plot_confusion_matrix(title='mine')
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ['a', 'b', 'c']
    assert [t.get_text() for t in ax.get_yticklabels()] == ['a', 'b', 'c']
    assert ax.get_xlabel() == 'Predicted' and ax.get_ylabel() == 'Actual' and ax.get_title() == 'mine'
    assert [t.get_text() for t in ax.texts] == ['1', '1', '0', '0', '1', '0', '0', '0', '1']  # row by row
    norm = interp.plot_confusion_matrix(normalize=True, figsize=(3, 3))
    assert [t.get_text() for t in norm.axes[0].texts][:3] == ['0.50', '0.50', '0.00']
    assert tuple(norm.get_size_inches()) == (3, 3)


def test_normalized_plot_with_an_empty_class_shows_zeros_not_nan():
    fig = _interp(preds=[0, 1], targets=[0, 0], n_classes=3).plot_confusion_matrix(normalize=True)
    assert [t.get_text() for t in fig.axes[0].texts][3:] == ['0.00'] * 6


@pytest.mark.parametrize('kwargs, error, match', [
    (dict(probs=torch.rand(5)), ValueError, r'shape \(n_items, n_classes\)'),
    (dict(probs=torch.rand(0, 4), targets=torch.zeros(0, dtype=torch.long), losses=torch.zeros(0)), ValueError, 'no items'),
    (dict(targets=torch.zeros(4, dtype=torch.long)), ValueError, r'one class index per item, shape \(5,\)'),
    (dict(targets=torch.zeros(5)), TypeError, 'integer class indexes'),
    (dict(targets=torch.tensor([0, 1, 2, 3, 4])), ValueError, r'class indexes in 0\.\.3'),
    (dict(targets=torch.tensor([0, -1, 2, 3, 1])), ValueError, 'found -1'),
    (dict(targets=torch.eye(4)[[0, 1, 2, 3, 0]]), ValueError, 'multi-label'),
    (dict(targets=None), ValueError, 'there are no targets'),
    (dict(losses=torch.zeros(5, 2)), ValueError, r'one loss per item, shape \(5,\)'),
    (dict(classes=['a', 'b']), ValueError, '2 class names for 4 columns'),
    (dict(texts=['only one']), ValueError, '1 texts for 5 items'),
])
def test_wrong_inputs_are_refused(kwargs, error, match):
    args = dict(probs=torch.rand(5, 4), targets=torch.tensor([0, 1, 2, 3, 0]), losses=torch.rand(5), classes=CLASSES)
    with pytest.raises(error, match=match): ClassificationInterpretation(**{**args, **kwargs})


# ---- on a trained classifier -----------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def trained():
    "A tiny classifier trained one epoch on 300 TREC-6 questions: (learn, dls, df)."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        set_seed(0)
        df = trec6('train').iloc[:300]
        dls = TextDataLoaders.from_df(df, text_col='text', label_col='label', seed=0, bs=32, progress=False)
        learn = text_classifier_learner(dls, AWDLSTM, config=TINY, metrics=accuracy)
        learn.remove_cb(ProgressCallback)
        learn.fit_stlr(1, 1e-2)
        yield learn, dls, df
    finally: torch.set_num_threads(n)


def test_from_learner_counts_and_dataset_order(trained, one_thread):
    learn, dls, _ = trained
    interp = ClassificationInterpretation.from_learner(learn)
    n_valid = len(dls.valid_idx)
    cm = interp.confusion_matrix()
    assert cm.shape == (6, 6) and cm.sum() == n_valid
    assert interp.classes == dls.classes and interp.dl is dls.valid
    probs, targets = learn.get_preds()
    assert torch.equal(interp.probs, probs) and torch.equal(interp.targets, targets)
    assert torch.equal(interp.targets, dls.valid.labels), "targets in the validation items' order"
    np.testing.assert_array_equal(cm.sum(1), np.bincount(dls.valid.labels.numpy(), minlength=6))
    assert np.trace(cm) / n_valid == pytest.approx(learn.validate()[1])


def test_a_shuffled_loader_comes_back_in_dataset_order(trained, one_thread, capsys):
    learn, dls, _ = trained
    interp = ClassificationInterpretation.from_learner(learn, dl=dls.train)
    assert torch.equal(interp.targets, dls.train.labels) and interp.confusion_matrix().sum() == len(dls.train_idx)
    i = int(interp.top_losses(1)[1])
    assert interp.show_top_losses(1).text[0] == dls.decode_ids(dls.train.ids[dls.train.offsets[i]:dls.train.offsets[i + 1]])


def test_show_top_losses_decodes_the_right_items(trained, one_thread, capsys):
    learn, dls, _ = trained
    interp = ClassificationInterpretation.from_learner(learn)
    df = interp.show_top_losses(5)
    top, idxs = interp.top_losses(5)
    assert df['index'].tolist() == idxs.tolist() and df.loss.tolist() == pytest.approx(top.tolist())
    vdl = dls.valid
    assert df.text.tolist() == [dls.decode_ids(vdl.ids[vdl.offsets[i]:vdl.offsets[i + 1]]) for i in idxs.tolist()]
    assert df.actual.tolist() == [dls.classes[int(dls.valid.labels[i])] for i in idxs.tolist()]
    assert df.probability.tolist() == pytest.approx(interp.probs[idxs].max(1).values.tolist())


def test_texts_path_shows_the_raw_texts(trained, one_thread, capsys):
    learn, dls, df = trained
    raw = df.text.iloc[dls.valid_idx].tolist()
    interp = ClassificationInterpretation.from_learner(learn, texts=raw)
    shown = interp.show_top_losses(4)
    assert shown.text.tolist() == [raw[i] for i in shown['index']]
    assert shown.text.tolist() == df.text.iloc[dls.valid_idx[shown['index']]].tolist()


def test_test_dl_with_labels_keeps_the_order_given(trained, one_thread, capsys):
    learn, dls, _ = trained
    # the loader batches the longest first: the order given is not the order it reads
    texts = ['Who wrote Hamlet ?', 'What is the capital of France ?', 'How far is it from Denver to Aspen ?']
    labels = ['HUM', 'LOC', 'NUM']
    tdl = dls.test_dl(texts, labels=labels)
    assert np.concatenate(tdl.batch_idxs()).tolist() == [2, 1, 0]
    interp = ClassificationInterpretation.from_learner(learn, dl=tdl)
    assert [interp.classes[t] for t in interp.targets] == labels
    assert interp.confusion_matrix().sum() == 3
    df = interp.show_top_losses(3)
    assert df.text.tolist() == [dls.decode_ids(_item_ids(tdl, i)) for i in df['index']]
    one_by_one = [dls.decode_ids(next(iter(dls.test_dl([t])))[0][0]) for t in texts]
    assert [dls.decode_ids(_item_ids(tdl, i)) for i in range(3)] == one_by_one, "index i is the i-th text given"


def test_backwards_loader_texts_read_forwards(one_thread):
    "A backwards loader stores each document reversed; the text shown is the same as a forward loader's."
    df = trec6('train').iloc[:60]
    kw = dict(text_col='text', label_col='label', seed=0, bs=16, progress=False)
    fwd, bwd = TextDataLoaders.from_df(df, **kw), TextDataLoaders.from_df(df, backwards=True, **kw)
    n = len(fwd.valid_idx)
    assert list(bwd.valid.ids[bwd.valid.offsets[0]:bwd.valid.offsets[1]]) == \
        list(fwd.valid.ids[fwd.valid.offsets[0]:fwd.valid.offsets[1]])[::-1]
    probs, targets, losses = torch.full((n, 6), 1 / 6), fwd.valid.labels, torch.arange(n, 0, -1).float()
    texts = [ClassificationInterpretation(probs, targets, losses, fwd.classes, dl=d.valid, decode=d.decode_ids)
             .show_top_losses(n).text.tolist() for d in (fwd, bwd)]
    assert texts[0] == texts[1] and texts[0][0] == fwd.decode_ids(fwd.valid.ids[:fwd.valid.offsets[1]])


# ---- learners and loaders it refuses ---------------------------------------------------------------------------------
def test_language_model_is_refused(one_thread):
    df = trec6('train').iloc[:200]
    dls_lm = TextDataLoaders.from_df(df, text_col='text', is_lm=True, seed=0, bs=8, seq_len=10, progress=False)
    lm = language_model_learner(dls_lm, AWDLSTM, config=TINY)
    with pytest.raises(ValueError, match='language model.*text_classifier_learner'):
        ClassificationInterpretation.from_learner(lm)


def test_unlabelled_test_dl_is_refused(trained):
    learn, dls, _ = trained
    with pytest.raises(ValueError, match=r'no labels.*test_dl\(texts, labels=labels\)'):
        ClassificationInterpretation.from_learner(learn, dl=dls.test_dl(['Who wrote Hamlet ?', 'Why ?']))


def test_multi_label_learner_is_refused(one_thread):
    df = trec6('train').iloc[:100]
    df = df.assign(label=[f'{l};{"short" if len(t) < 40 else "long"}' for t, l in zip(df.text, df.label)])
    dls = TextDataLoaders.from_df(df, text_col='text', label_col='label', label_delim=';', seed=0, bs=16, progress=False)
    learn = text_classifier_learner(dls, AWDLSTM, config=TINY)
    with pytest.raises(ValueError, match='multi-label'): ClassificationInterpretation.from_learner(learn)


def test_learner_without_a_validation_loader_is_refused(trained):
    learn, dls, _ = trained
    valid, dls.valid = dls.valid, None
    try:
        with pytest.raises(ValueError, match='no validation loader.*dl='): ClassificationInterpretation.from_learner(learn)
    finally: dls.valid = valid


def test_a_plain_torch_loader_works_too(learner_factory, capsys):
    "Any classifier `Learner` on a torch `DataLoader`: classes default to 0..n-1, items are read from the dataset."
    learn = learner_factory('cls')
    interp = ClassificationInterpretation.from_learner(learn)
    assert interp.classes == [0, 1, 2] and interp.confusion_matrix().sum() == len(learn.dls.valid.dataset)
    assert 'text' not in interp.show_top_losses(3).columns
    shown = ClassificationInterpretation(interp.probs, interp.targets, interp.losses, interp.classes, dl=learn.dls.valid,
                                         decode=lambda x: f'{x[0]:.3f}').show_top_losses(2)
    assert shown.text.tolist() == [f'{learn.dls.valid.dataset[i][0][0]:.3f}' for i in shown['index']]
