"""The three doors to text loaders (from_df/from_csv/from_folder, DataBlock, test_dl) on the shared datasets,
ULMFiT's vocab hand-over, order restoration, and every bad input the data API promises to report."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from ulmfit_learner import DataBlock, Learner, ProgressCallback, TextDataLoaders, set_seed
from ulmfit_learner.text.data import (CategoryBlock, ColReader, GrandparentSplitter, RandomSplitter, TextBlock,
                                      parent_label)

from conftest import DATA

SPECIALS = ['xxunk', 'xxpad', 'xxbos', 'xxeos', 'xxfld', 'xxrep', 'xxwrep', 'xxup', 'xxmaj']


@pytest.fixture(scope='module')
def trec():
    return pd.read_csv(DATA / 'trec' / 'train.csv', keep_default_na=False)


@pytest.fixture(scope='module')
def trec_small(trec):
    return trec.iloc[::8].reset_index(drop=True)


@pytest.fixture(scope='module')
def imdb_small():
    df = pd.read_csv(DATA / 'imdb' / 'train.csv.xz', keep_default_na=False)
    return pd.concat([df[df.label == 'neg'].head(60), df[df.label == 'pos'].head(60)]).reset_index(drop=True)


def write_folder(root: Path, df: pd.DataFrame, valid_every: int = 4, valid='test') -> Path:
    "Write `df` (text,label) in the aclImdb layout under `root`."
    for i, (text, label) in enumerate(zip(df.text, df.label)):
        f = root / (valid if i % valid_every == 0 else 'train') / label / f'{i}.txt'
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text, encoding='utf-8')
    return root


# ---- the three doors on real data -------------------------------------------------------------------------------------
def test_from_df_trec(trec_small):
    dls = TextDataLoaders.from_df(trec_small, text_col='text', label_col='label', valid_pct=0.2, seed=42, bs=16,
                                  progress=False)
    assert dls.classes == ['ABBR', 'DESC', 'ENTY', 'HUM', 'LOC', 'NUM']
    assert len(dls.train_idx) + len(dls.valid_idx) == len(trec_small)
    assert len(dls.valid_idx) == round(0.2 * len(trec_small))
    assert list(dls.vocab[:9]) == SPECIALS and len(dls.vocab) % 8 == 0
    x, y = dls.one_batch()
    assert x.dtype == torch.long and y.dtype == torch.long and x.shape[0] == 16
    n_seen = sum(len(b[0]) for b in dls.train)
    assert n_seen == len(dls.train_idx), "every training document once per epoch"


def test_from_csv_trec_full():
    dls = TextDataLoaders.from_csv(DATA / 'trec', 'train.csv', text_col='text', label_col='label', seed=0, bs=64,
                                   progress=False)
    assert len(dls.train_idx) + len(dls.valid_idx) == 5452
    assert 'what' in dls.vocab.stoi and '?' in dls.vocab.stoi


def test_from_csv_ag_news():
    dls = TextDataLoaders.from_csv(DATA / 'ag_news', 'test.csv', text_col='text', label_col='label', seed=0, bs=64,
                                   progress=False)
    assert dls.classes == ['Business', 'Sci/Tech', 'Sports', 'World']
    assert len(dls.train_idx) + len(dls.valid_idx) == 7600
    x, y = dls.one_batch()
    assert (x[:, -1] != dls.pad_idx).all()


def test_from_folder_imdb(tmp_path, imdb_small):
    root = write_folder(tmp_path / 'imdb', imdb_small)
    (root / 'train' / 'unsup').mkdir()
    (root / 'train' / 'unsup' / 'u.txt').write_text('an unlabelled review', encoding='utf-8')
    dls = TextDataLoaders.from_folder(root, bs=8, seed=0, progress=False)  # valid='test' by default, as in aclImdb
    assert dls.classes == ['neg', 'pos'], "train/unsup is not a label"
    assert len(dls.train_idx) + len(dls.valid_idx) == len(imdb_small)
    assert len(dls.valid_idx) == len(range(0, len(imdb_small), 4))
    lm = TextDataLoaders.from_folder(root, valid='test', is_lm=True, bs=4, seq_len=30, seed=0, progress=False)
    assert lm.is_lm and lm.classes is None
    assert len(lm.train_idx) + len(lm.valid_idx) == len(imdb_small) + 1, "the language model reads train/unsup too"
    x, y = lm.one_batch()
    assert x.shape == (4, 30) and torch.equal(x[:, 1:], y[:, :-1])


def test_extra_vocab_from_a_folder_and_on_a_given_vocab(tmp_path, imdb_small):
    """`extra_vocab` extends the counted vocabulary (from_folder) and a given one (`text_vocab`) alike; the documents
    are numericalized with the extended vocabulary, so a word only `extra_vocab` has is no longer xxunk in them."""
    root = write_folder(tmp_path / 'imdb', imdb_small)
    plain = TextDataLoaders.from_folder(root, is_lm=True, bs=4, seq_len=30, seed=0, progress=False)
    words = {t for text in imdb_small.text for t in text.lower().split() if t.isalpha()}
    extra = sorted(w for w in words if w not in plain.vocab)[:20]
    assert len(extra) == 20
    ext = TextDataLoaders.from_folder(root, is_lm=True, bs=4, seq_len=30, seed=0, progress=False, extra_vocab=extra)
    assert ext.vocab == plain.vocab.extend(extra)
    n_unk = lambda d: sum(int((x == 0).sum()) for x, _ in d.train)
    assert n_unk(ext) < n_unk(plain), 'the added words are read as themselves'
    given = TextDataLoaders.from_folder(root, bs=8, seed=0, progress=False, text_vocab=plain.vocab, extra_vocab=extra)
    assert given.vocab == ext.vocab
    with pytest.raises(TypeError, match='pretrained_vocab'): TextBlock.from_folder(root, extra_vocab=root)


def test_imdb_html_is_cleaned(imdb_small):
    dls = TextDataLoaders.from_df(imdb_small, text_col='text', label_col='label', seed=0, bs=8, min_freq=1, progress=False)
    assert '<br' not in dls.vocab.stoi and 'br' not in dls.vocab.stoi


def test_datablock_equals_from_df(trec_small):
    a = TextDataLoaders.from_df(trec_small, text_col='text', label_col='label', seed=3, bs=16, progress=False)
    block = DataBlock(blocks=(TextBlock.from_df('text'), CategoryBlock()), get_y=ColReader('label'),
                      splitter=RandomSplitter(0.2, seed=3))
    b = block.dataloaders(trec_small, bs=16, seed=3, progress=False)
    assert list(a.vocab) == list(b.vocab) and a.classes == b.classes
    assert np.array_equal(a.valid_idx, b.valid_idx)
    for (xa, ya), (xb, yb) in zip(a.valid, b.valid): assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_datablock_accepts_block_classes_and_get_x(trec_small):
    block = DataBlock(blocks=(TextBlock.from_df('text'), CategoryBlock), get_x=ColReader('text'),
                      get_y=ColReader('label'), splitter=RandomSplitter(0.2, seed=0))
    dls = block.dataloaders(trec_small, bs=16, progress=False)
    assert dls.classes == ['ABBR', 'DESC', 'ENTY', 'HUM', 'LOC', 'NUM']


def test_datablock_with_custom_getters_and_grandparent_split(tmp_path, imdb_small):
    from ulmfit_learner.text.data import get_text_files
    root = write_folder(tmp_path / 'd', imdb_small, valid='valid')
    block = DataBlock(blocks=(TextBlock.from_folder(root), CategoryBlock()), get_items=get_text_files,
                      get_y=parent_label, splitter=GrandparentSplitter('train', 'valid'))
    dls = block.dataloaders(root, bs=8, seed=0, progress=False)
    assert dls.classes == ['neg', 'pos'] and len(dls.valid_idx) == 30


def test_datablock_get_x_row_function(trec_small):
    block = DataBlock(blocks=(TextBlock.from_df('text'), CategoryBlock()), get_x=lambda r: r['text'].upper(),
                      get_y=lambda r: r['label'], splitter=RandomSplitter(0.2, seed=0))
    dls = block.dataloaders(trec_small, bs=16, progress=False)
    assert 'xxup' in dls.vocab.stoi and dls.vocab.stoi['xxup'] == 7
    x, _ = dls.one_batch()
    assert (x == 7).any(), "every word upper-cased gets the xxup marker"


def test_multi_label(trec_small):
    df = trec_small.assign(tags=trec_small.label + ';' + np.where(trec_small.text.str.len() > 50, 'long', 'short'))
    dls = TextDataLoaders.from_df(df, text_col='text', label_col='tags', label_delim=';', seed=0, bs=16, progress=False)
    assert dls.classes == sorted(['ABBR', 'DESC', 'ENTY', 'HUM', 'LOC', 'NUM', 'long', 'short'])
    _, y = dls.one_batch()
    assert y.dtype == torch.float32 and y.shape[1] == 8 and (y.sum(1) == 2).all()


def test_several_text_columns_get_field_markers(trec_small):
    df = trec_small.assign(fine=trec_small.label_fine)
    dls = TextDataLoaders.from_df(df, text_col=['text', 'fine'], label_col='label', seed=0, bs=16, progress=False)
    x, _ = dls.one_batch()
    fld = dls.vocab.stoi['xxfld']
    assert ((x == fld).sum(1) == 2).all(), "one xxfld marker per field"


def test_lm_then_classifier_share_the_vocab(trec_small):
    lm = TextDataLoaders.from_df(trec_small, text_col='text', is_lm=True, valid_pct=0.1, seed=0, bs=8, seq_len=16,
                                 progress=False)
    clas = TextDataLoaders.from_df(trec_small, text_col='text', label_col='label', text_vocab=lm.vocab, seed=0, bs=16,
                                   progress=False)
    assert list(clas.vocab) == list(lm.vocab)
    clas2 = TextDataLoaders.from_df(trec_small, text_col='text', label_col='label', text_vocab=list(lm.vocab), seed=0,
                                    bs=16, progress=False)
    assert list(clas2.vocab) == list(lm.vocab), "a plain token list works as a vocab too"


def test_vocab_comes_from_training_documents_only(trec_small):
    df = trec_small.copy()
    df['is_valid'] = False
    extra = pd.DataFrame({'text': ['zyzzyva zyzzyva zyzzyva zyzzyva'] * 3, 'label': ['ENTY'] * 3, 'is_valid': True})
    df = pd.concat([df, extra], ignore_index=True)
    dls = TextDataLoaders.from_df(df, text_col='text', label_col='label', valid_col='is_valid', seed=0, bs=16,
                                  progress=False)
    assert 'zyzzyva' not in dls.vocab.stoi
    x, _ = next(iter(dls.valid))
    assert (x == 0).any(), "the validation-only word reads as xxunk"


def test_lm_backwards_and_reproducible(trec_small):
    kw = dict(text_col='text', is_lm=True, valid_pct=0.1, seed=5, bs=4, seq_len=12, progress=False)
    fwd = TextDataLoaders.from_df(trec_small, **kw)
    fwd2 = TextDataLoaders.from_df(trec_small, **kw)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(fwd.train, fwd2.train)), "same seed, same batches"
    bwd = TextDataLoaders.from_df(trec_small, backwards=True, **kw)
    xf, _ = next(iter(fwd.valid))
    xb, _ = next(iter(bwd.valid))
    # forward: a document starts with xxbos; backwards: xxbos ends it
    assert xf[0, 0].item() == 2 and not torch.equal(xf, xb)


def test_classifier_backwards_reverses_each_document(trec_small):
    kw = dict(text_col='text', label_col='label', seed=1, bs=16, progress=False)
    fwd = TextDataLoaders.from_df(trec_small, **kw)
    bwd = TextDataLoaders.from_df(trec_small, backwards=True, **kw)
    (xf, yf), (xb, yb) = next(iter(fwd.valid)), next(iter(bwd.valid))
    assert torch.equal(yf, yb)
    for rf, rb in zip(xf, xb):
        f, b = rf[rf != 1], rb[rb != 1]
        assert torch.equal(f, b.flip(0))
    assert (xb[:, -1] == 2).all(), "the reversed document ends with xxbos"
    assert fwd.decode_ids(xf[0]) == bwd.decode_ids(xb[0]), "decoding puts the words back in reading order"


def test_show_batch(trec_small, capsys):
    dls = TextDataLoaders.from_df(trec_small, text_col='text', label_col='label', seed=0, bs=16, progress=False)
    dls.show_batch(max_n=3, trunc_at=40)
    out = capsys.readouterr().out
    assert 'text' in out and 'label' in out and 'xxbos' not in out
    frame = dls.batch_frame(max_n=3, trunc_at=40)
    assert len(frame) == 3 and frame.text.str.len().max() <= 40 and set(frame.label) <= set(dls.classes)
    lm = TextDataLoaders.from_df(trec_small, text_col='text', is_lm=True, seed=0, bs=4, seq_len=10, progress=False)
    assert list(lm.batch_frame(max_n=2).columns) == ['text', 'text_']


# ---- test_dl and predictions in order -------------------------------------------------------------------------------
class MeanPool(nn.Module):
    "Embedding, mean over the real (non-padding) tokens, linear: enough to check order and masking."
    def __init__(self, vocab_sz, n_class, pad_idx=1):
        super().__init__()
        self.emb, self.out, self.pad_idx = nn.Embedding(vocab_sz, 16), nn.Linear(16, n_class), pad_idx

    def forward(self, x):
        mask = (x != self.pad_idx).unsqueeze(-1).float()
        return self.out((self.emb(x) * mask).sum(1) / mask.sum(1))


def test_test_dl_and_get_preds_in_dataset_order(trec_small, tmp_path):
    dls = TextDataLoaders.from_df(trec_small, text_col='text', label_col='label', seed=0, bs=16, progress=False)
    set_seed(0)
    learn = Learner(dls, MeanPool(len(dls.vocab), len(dls.classes)), nn.CrossEntropyLoss(), path=tmp_path)
    learn.remove_cb(ProgressCallback)
    learn.fit(1, 1e-2)
    texts = list(trec_small.text.iloc[:40])
    labels = list(trec_small.label.iloc[:40])
    tdl = dls.test_dl(texts, labels=labels, bs=8)
    preds, targs = learn.get_preds(dl=tdl)
    assert [dls.classes[i] for i in targs] == labels, "targets come back in the order given"
    learn.model.eval()
    with torch.no_grad():
        for i in (0, 7, 39):
            (x,) = next(iter(dls.test_dl([texts[i]])))
            assert torch.allclose(torch.softmax(learn.model(x), -1)[0], preds[i], atol=1e-5)
    preds_v, targs_v = learn.get_preds()
    assert torch.equal(targs_v, torch.tensor([dls.classes.index(l) for l in trec_small.label.iloc[dls.valid_idx]]))


def test_test_dl_unlabelled_and_dataframe(trec_small):
    dls = TextDataLoaders.from_df(trec_small, text_col='text', label_col='label', seed=0, bs=16, progress=False)
    (x,) = next(iter(dls.test_dl('Who is the president of France ?')))
    assert x.shape[0] == 1 and dls.decode_ids(x[0]).startswith('Who is the president')
    tdl = dls.test_dl(trec_small.head(5))
    assert sum(len(b[0]) for b in tdl) == 5


def test_test_dl_unseen_label(trec_small):
    dls = TextDataLoaders.from_df(trec_small, text_col='text', label_col='label', seed=0, bs=16, progress=False)
    with pytest.raises(ValueError, match=r"test labels \['FOOD'\]"):
        dls.test_dl(['a b c'], labels=['FOOD'])


# ---- bad input ------------------------------------------------------------------------------------------------------
def frame(texts, labels): return pd.DataFrame({'text': texts, 'label': labels})


GOOD = ['the movie was good', 'the movie was bad', 'a fine film', 'a poor film', 'great acting', 'bad acting']
LABELS = ['pos', 'neg', 'pos', 'neg', 'pos', 'neg']


def test_missing_text_column():
    with pytest.raises(KeyError, match=r"column 'review' not found.*\['text', 'label'\]"):
        TextDataLoaders.from_df(frame(GOOD, LABELS), text_col='review', progress=False)


def test_missing_label_column():
    with pytest.raises(KeyError, match="column 'sentiment' not found"):
        TextDataLoaders.from_df(frame(GOOD, LABELS), label_col='sentiment', progress=False)


def test_nan_text_is_named_with_its_row():
    texts = GOOD[:2] + [float('nan')] + GOOD[3:]
    with pytest.raises(ValueError, match=r"1 text is missing.*rows 2.*drop_empty=True"):
        TextDataLoaders.from_df(frame(texts, LABELS), progress=False)


def test_empty_text_and_drop_empty():
    texts = GOOD[:4] + ['   '] + GOOD[5:]
    with pytest.raises(ValueError, match=r"1 text is empty \(rows 4\)"):
        TextDataLoaders.from_df(frame(texts, LABELS), valid_pct=0.34, seed=0, progress=False)
    with pytest.warns(UserWarning, match=r"dropped 4 of 24 items.*rows 4, 10, 16, 22"):
        dls = TextDataLoaders.from_df(frame(texts * 4, LABELS * 4), valid_pct=0.25, seed=0, drop_empty=True,
                                      min_freq=1, progress=False)
    assert len(dls.train_idx) + len(dls.valid_idx) == 20


def test_non_string_text():
    with pytest.raises(TypeError, match=r"not a string.*rows 1"):
        TextDataLoaders.from_df(frame(['a', 3, 'b', 'c', 'd', 'e'], LABELS), progress=False)


def test_nan_label_is_named():
    labels = LABELS[:3] + [None] + LABELS[4:]
    df = frame(GOOD, labels).assign(is_valid=[False] * 4 + [True] * 2)
    with pytest.raises(ValueError, match=r"1 training label is missing \(rows 3\)"):
        TextDataLoaders.from_df(df, valid_col='is_valid', progress=False)


def test_single_class():
    df = frame(GOOD, ['pos'] * 6)
    with pytest.raises(ValueError, match="single class \\('pos'\\)"):
        TextDataLoaders.from_df(df, seed=0, progress=False)


def test_validation_label_absent_from_training():
    df = frame(GOOD, ['pos', 'neg', 'pos', 'neg', 'meh', 'pos']).assign(is_valid=[False] * 4 + [True] * 2)
    with pytest.raises(ValueError, match=r"validation labels \['meh'\] \(rows 4\) do not occur"):
        TextDataLoaders.from_df(df, valid_col='is_valid', progress=False)


def test_bad_valid_col():
    df = frame(GOOD, LABELS).assign(is_valid=['yes', 'no'] * 3)
    with pytest.raises(ValueError, match="must hold True/False"):
        TextDataLoaders.from_df(df, valid_col='is_valid', progress=False)
    with pytest.raises(KeyError, match="validation column 'valid' not found"):
        TextDataLoaders.from_df(frame(GOOD, LABELS), valid_col='valid', progress=False)


def test_non_utf8_file_in_folder(tmp_path):
    root = write_folder(tmp_path / 'd', frame(GOOD * 2, LABELS * 2), valid='valid')
    bad = root / 'train' / 'pos' / 'latin.txt'
    bad.write_bytes('caf\xe9 cr\xe8me'.encode('latin-1'))
    with pytest.raises(ValueError, match=r"latin.txt is not valid utf-8.*encoding='latin-1'"):
        TextDataLoaders.from_folder(root, valid='valid', progress=False)
    dls = TextDataLoaders.from_folder(root, valid='valid', encoding='latin-1', min_freq=1, progress=False)
    assert 'café' in dls.vocab.stoi


def test_non_utf8_csv(tmp_path):
    (tmp_path / 'x.csv').write_bytes('text,label\ncaf\xe9,pos\nbar,neg\n'.encode('latin-1'))
    with pytest.raises(ValueError, match="not valid utf-8.*encoding='latin-1'"):
        TextDataLoaders.from_csv(tmp_path, 'x.csv', progress=False)


def test_missing_folder_and_csv(tmp_path):
    with pytest.raises(FileNotFoundError, match='no CSV file'): TextDataLoaders.from_csv(tmp_path, 'nope.csv')
    (tmp_path / 'train').mkdir()
    with pytest.raises(FileNotFoundError, match="no folder 'test'"): TextDataLoaders.from_folder(tmp_path)


def test_lm_corpus_too_small_for_the_batch():
    with pytest.raises(ValueError, match='bs'):
        TextDataLoaders.from_df(frame(GOOD, LABELS), is_lm=True, bs=64, seq_len=72, valid_pct=0, progress=False)


def test_datablock_misuse():
    with pytest.raises(TypeError, match='first block must be a TextBlock'): DataBlock(blocks=(CategoryBlock(),))
    with pytest.raises(ValueError, match='needs a target block'): DataBlock(blocks=(TextBlock.from_df('text'),))
    with pytest.raises(ValueError, match='needs get_y'): DataBlock(blocks=(TextBlock.from_df('text'), CategoryBlock()))
    with pytest.raises(ValueError, match='next tokens'):
        DataBlock(blocks=(TextBlock.from_df('text', is_lm=True), CategoryBlock()), get_y=ColReader('label'))


def test_splitter_overlap_and_left_out():
    df = frame(GOOD, LABELS)
    both = DataBlock((TextBlock.from_df('text', min_freq=1), CategoryBlock()), get_y=ColReader('label'),
                     splitter=lambda items: ([0, 1, 2, 3], [3, 4]))
    with pytest.raises(ValueError, match='both the training and the validation'): both.dataloaders(df, progress=False)
    partial = DataBlock((TextBlock.from_df('text', min_freq=1), CategoryBlock()), get_y=ColReader('label'),
                        splitter=lambda items: ([0, 1, 2, 3], [4]))
    with pytest.warns(UserWarning, match='1 of 6 items are in neither'): partial.dataloaders(df, bs=2, progress=False)


# ---- resume with loaders that shuffle per epoch ---------------------------------------------------------------------
class TinyLM(nn.Module):
    def __init__(self, vocab_sz):
        super().__init__()
        self.emb, self.out = nn.Embedding(vocab_sz, 8), nn.Linear(8, vocab_sz)

    def forward(self, x): return self.out(self.emb(x))


def _lm_loss(pred, targ): return nn.functional.cross_entropy(pred.flatten(0, 1), targ.flatten())


def test_resume_with_text_loaders_gives_the_same_weights(trec_small, tmp_path):
    "The loaders' shuffles are functions of (seed, epoch): a resumed run must read epoch k's order, not epoch 0's."
    from ulmfit_learner import Callback, CallbackError, CheckpointCallback

    def run(path, cbs=(), resume=None, crash_after=None):
        set_seed(0)
        dls = TextDataLoaders.from_df(trec_small, text_col='text', is_lm=True, valid_pct=0.1, seed=11, bs=4, seq_len=10,
                                      progress=False)
        learn = Learner(dls, TinyLM(len(dls.vocab)), _lm_loss, path=path)
        learn.remove_cb(ProgressCallback)
        extra = [CheckpointCallback('ckpt')]
        if crash_after is not None:
            class Crash(Callback):
                order = 100  # after the checkpoint of the epoch is written
                def after_epoch(self, learn):
                    if learn.epoch == crash_after: raise RuntimeError('crash')
            extra.append(Crash())
        learn.fit_one_cycle(3, 1e-2, cbs=[*extra, *cbs], resume=resume)
        return learn

    full = run(tmp_path / 'full')
    with pytest.raises(CallbackError, match='crash'): run(tmp_path / 'cut', crash_after=0)
    resumed = run(tmp_path / 'cut', resume='ckpt')
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()): assert torch.equal(a, b)


# ---- the tokenizer choices through the data API -----------------------------------------------------------------------
def test_sentencepiece_through_from_df(trec_small, tmp_path):
    from ulmfit_learner import SentencePieceTokenizer
    lm = TextDataLoaders.from_df(trec_small, text_col='text', is_lm=True, seed=0, bs=8, seq_len=16,
                                 tok=SentencePieceTokenizer(vocab_sz=200), cache_dir=tmp_path, min_freq=1, progress=False)
    assert (tmp_path / 'spm.model').exists(), "trained on the training texts, saved in the cache folder"
    assert any(t.startswith('▁') for t in lm.vocab), "subword pieces"
    assert list(lm.vocab[:9]) == SPECIALS
    x, _ = lm.one_batch()
    assert lm.decode_ids(x[0]).replace(' ', '').isprintable()
    # the classifier reuses the trained tokenizer and the vocabulary
    clas = TextDataLoaders.from_df(trec_small, text_col='text', label_col='label', tok=lm.tokenizer,
                                   text_vocab=lm.vocab, seed=0, bs=16, progress=False)
    xc, _ = clas.one_batch()
    assert (xc == 0).float().mean() < 0.01, "almost no unknown pieces with the same tokenizer"
    (xt,) = next(iter(clas.test_dl(['What is the capital of France ?'])))
    assert clas.decode_ids(xt[0]).replace(' ', '') == 'Whatisthecapitalof France?'.replace(' ', '')


def test_token_cache_is_reused(trec_small, tmp_path):
    kw = dict(text_col='text', label_col='label', seed=0, bs=16, cache_dir=tmp_path / 'tok', progress=False)
    a = TextDataLoaders.from_df(trec_small, **kw)
    files = sorted(p.name for p in (tmp_path / 'tok').iterdir())
    assert files, "the cache folder holds the tokenized chunks"
    b = TextDataLoaders.from_df(trec_small, **kw)
    assert sorted(p.name for p in (tmp_path / 'tok').iterdir()) == files, "the second run only reads"
    assert list(a.vocab) == list(b.vocab)
    for (xa, ya), (xb, yb) in zip(a.valid, b.valid): assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_custom_callable_tokenizer(trec_small):
    dls = TextDataLoaders.from_df(trec_small, text_col='text', label_col='label', seed=0, bs=16, min_freq=1,
                                  tok=lambda texts: [t.split() for t in texts], progress=False)
    assert '?' in dls.vocab.stoi and 'xxmaj' in dls.vocab.stoi


def test_looking_at_a_batch_does_not_change_training(trec_small):
    "one_batch and show_batch leave the loaders as they were: the next epoch's shuffle is the same."
    kw = dict(text_col='text', label_col='label', seed=4, bs=16, progress=False)
    a, b = TextDataLoaders.from_df(trec_small, **kw), TextDataLoaders.from_df(trec_small, **kw)
    a.one_batch(); a.batch_frame(); a.batch_frame(a.valid)
    for (xa, ya), (xb, yb) in zip(a.train, b.train): assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_small_lm_validation_set_uses_fewer_streams(trec_small):
    dls = TextDataLoaders.from_df(trec_small.head(300), text_col='text', is_lm=True, valid_pct=0.05, seed=0, bs=32,
                                  seq_len=40, progress=False)
    assert dls.train.bs == 32 and 1 <= dls.valid.bs < 32
    x, y = next(iter(dls.valid))
    assert x.shape[1] == 40
