"""The text loaders: the LM stream (shapes, shift, continuity, coverage, seeds, backwards, variable BPTT, O(batch)
batches, errors) and the sorted classifier loader (left padding, masks, coverage, length grouping, order restoration,
the Learner)."""
import math
import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ulmfit_learner import Callback, DataLoaders, Learner, accuracy, set_seed
from ulmfit_learner.text.loaders import LMDataLoader, SortedDataLoader


def corpus(lengths, first_id: int = 0):
    "ids = first_id, first_id + 1, ... (every token is unique: its position), documents of the given lengths."
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return np.arange(first_id, first_id + offsets[-1], dtype=np.int32), offsets


def random_lengths(n: int, lo: int = 1, hi: int = 60, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(lo, hi, n)


def epoch(dl) -> list:
    return list(dl)


def rows(batches) -> torch.Tensor:
    "The inputs of an epoch put back together: (bs, row_len)."
    return torch.cat([x for x, _ in batches], dim=1)


# ---- LMDataLoader ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('n_tokens,bs,seq_len', [(1001, 4, 10), (1000, 4, 10), (997, 7, 13), (100, 3, 33), (65, 64, 1)])
def test_lm_len_and_shapes(n_tokens, bs, seq_len):
    ids, offsets = corpus([n_tokens // 2, n_tokens - n_tokens // 2])
    dl = LMDataLoader(ids, offsets, bs=bs, seq_len=seq_len)
    batches = epoch(dl)
    n = (n_tokens - 1) // bs
    assert dl.row_len == n and len(dl) == len(batches) == math.ceil(n / seq_len)
    assert all(x.shape == y.shape == (bs, seq_len) for x, y in batches[:-1])
    assert batches[-1][0].shape == (bs, n - seq_len * (len(dl) - 1)), 'only the last batch can be shorter'
    assert all(x.dtype == y.dtype == torch.int64 for x, y in batches)
    assert (dl.bs, dl.seq_len, dl.n_docs, dl.n_tokens) == (bs, seq_len, 2, n_tokens)


@pytest.mark.parametrize('shuffle', [False, True])
def test_lm_targets_shift_and_rows_continue(shuffle):
    ids, offsets = corpus(random_lengths(80))
    dl = LMDataLoader(ids, offsets, bs=6, seq_len=11, shuffle=shuffle, seed=0)
    batches = epoch(dl)
    for x, y in batches: assert torch.equal(y[:, :-1], x[:, 1:])
    for (_, y0), (x1, _) in zip(batches, batches[1:]): assert torch.equal(x1[:, 0], y0[:, -1])
    xs = rows(batches)
    ys = torch.cat([y for _, y in batches], dim=1)
    assert torch.equal(ys[:-1, -1], xs[1:, 0]), "a row's last target is the next row's first input"


def test_lm_every_token_is_an_input_once_per_epoch():
    lengths = random_lengths(100)
    ids, offsets = corpus(lengths)
    total = int(lengths.sum())
    bs = 8
    for shuffle in (False, True):
        dl = LMDataLoader(ids, offsets, bs=bs, seq_len=9, shuffle=shuffle, seed=3)
        for _ in range(3):
            batches = epoch(dl)
            seen = rows(batches).flatten().tolist()
            last_target = batches[-1][1][-1, -1].item()
            assert len(seen) == len(set(seen)) == bs * dl.row_len >= total - bs
            assert last_target not in seen
            if not shuffle: assert seen == list(range(bs * dl.row_len)), 'unshuffled: the corpus in order'


def test_lm_shuffle_keeps_documents_whole():
    lengths = random_lengths(50, lo=2)
    ids, offsets = corpus(lengths)
    starts = set(offsets[:-1].tolist())
    dl = LMDataLoader(ids, offsets, bs=1, seq_len=10, shuffle=True, seed=0)  # bs=1: one row, the whole stream
    stream = rows(epoch(dl)).flatten().tolist()
    assert stream != sorted(stream)
    doc_starts = [i for i, t in enumerate(stream) if t in starts]
    for s, e in zip(doc_starts, doc_starts[1:]):
        assert stream[s:e] == list(range(stream[s], stream[s] + e - s)), 'a document comes out whole and in order'


def test_lm_seeds_and_epochs():
    ids, offsets = corpus(random_lengths(60))
    a = LMDataLoader(ids, offsets, bs=4, seq_len=10, shuffle=True, seed=11)
    b = LMDataLoader(ids, offsets, bs=4, seq_len=10, shuffle=True, seed=11)
    c = LMDataLoader(ids, offsets, bs=4, seq_len=10, shuffle=True, seed=12)
    a0, a1, b0, b1, c0 = rows(epoch(a)), rows(epoch(a)), rows(epoch(b)), rows(epoch(b)), rows(epoch(c))
    assert torch.equal(a0, b0) and torch.equal(a1, b1), 'same seed, same batches'
    assert not torch.equal(a0, a1), 'another epoch, another order'
    assert not torch.equal(a0, c0), 'another seed, another order'
    a.set_epoch(1)
    assert torch.equal(rows(epoch(a)), a1) and a.epoch == 2
    set_seed(5); d = LMDataLoader(ids, offsets, bs=4, seq_len=10, shuffle=True)
    set_seed(5); e = LMDataLoader(ids, offsets, bs=4, seq_len=10, shuffle=True)
    assert torch.equal(rows(epoch(d)), rows(epoch(e))), 'seed=None draws from torch, so set_seed controls it'


def test_lm_unshuffled_is_deterministic_and_uses_no_random_state():
    ids, offsets = corpus(random_lengths(60))
    state = torch.get_rng_state()
    dl = LMDataLoader(ids, offsets, bs=4, seq_len=10)
    assert torch.equal(torch.get_rng_state(), state), 'no seed drawn when nothing is random'
    first = rows(epoch(dl))
    assert all(torch.equal(rows(epoch(dl)), first) for _ in range(3))


def test_lm_backwards_reverses_the_stream():
    lengths = random_lengths(40)
    total = int(lengths.sum())
    lengths[-1] += (1 - total) % 4  # make (n_tokens - 1) a multiple of bs: the rows hold the whole stream
    ids, offsets = corpus(lengths)
    for shuffle in (False, True):
        fwd = epoch(LMDataLoader(ids, offsets, bs=4, seq_len=7, shuffle=shuffle, seed=2))
        bwd = epoch(LMDataLoader(ids, offsets, bs=4, seq_len=7, shuffle=shuffle, seed=2, backwards=True))
        stream = rows(fwd).flatten().tolist() + [fwd[-1][1][-1, -1].item()]
        assert sorted(stream) == list(range(len(ids)))
        back = rows(bwd).flatten().tolist() + [bwd[-1][1][-1, -1].item()]
        assert back == stream[::-1], 'backwards reads the same epoch stream from its end'
    (x, _), = epoch(LMDataLoader(*corpus([5, 4]), bs=1, seq_len=8, backwards=True))
    assert x.flatten().tolist() == [8, 7, 6, 5, 4, 3, 2, 1], 'each document reversed'


def test_lm_variable_seq_len():
    ids, offsets = corpus(random_lengths(400, lo=10, hi=100))
    dl = LMDataLoader(ids, offsets, bs=8, seq_len=30, shuffle=True, seed=0, vary_seq_len=True)
    fixed_len = len(LMDataLoader(ids, offsets, bs=8, seq_len=30))
    widths_per_epoch = []
    for _ in range(4):
        batches = epoch(dl)
        widths = [x.shape[1] for x, _ in batches]
        assert len(batches) == len(dl) == fixed_len, 'the number of batches never changes'
        assert sum(widths) == dl.row_len and min(widths) >= 1, 'the windows cover each row exactly'
        for (_, y0), (x1, _) in zip(batches, batches[1:]): assert torch.equal(x1[:, 0], y0[:, -1])
        for x, y in batches: assert torch.equal(y[:, :-1], x[:, 1:])
        assert len(set(widths)) > 5 and abs(np.mean(widths) - 30) < 3
        widths_per_epoch.append(widths)
    assert widths_per_epoch[0] != widths_per_epoch[1], 'new lengths every epoch'
    again = LMDataLoader(ids, offsets, bs=8, seq_len=30, shuffle=True, seed=0, vary_seq_len=True)
    assert [x.shape[1] for x, _ in again] == widths_per_epoch[0], 'reproducible'


def test_lm_variable_seq_len_tiny_seq_len_has_no_empty_batch():
    ids, offsets = corpus([200])
    dl = LMDataLoader(ids, offsets, bs=2, seq_len=2, shuffle=False, seed=0, vary_seq_len=True)
    widths = [x.shape[1] for x, _ in dl]
    assert len(widths) == len(dl) and sum(widths) == dl.row_len and min(widths) >= 1


def test_lm_batches_are_cut_from_views_of_the_stream():
    "Structure behind 'a batch costs O(batch)': the rows are views of the epoch stream, a batch copies bs*sl ids."
    lengths = np.full(20_000, 100)
    ids, offsets = corpus(lengths)  # 2 million tokens, 8 MB of int32
    dl = LMDataLoader(ids, offsets, bs=32, seq_len=70)
    stream = dl._stream(dl._rng(0))
    assert np.shares_memory(stream, dl.ids), 'unshuffled: the stream is the ids array itself, not a copy'
    xs, ys = dl._rows(stream)
    assert np.shares_memory(xs, stream) and np.shares_memory(ys, stream) and not xs.flags.owndata
    x, y = dl._batch(xs, ys, 140, 70)
    assert torch.equal(x, torch.from_numpy(xs[:, 140:210].astype(np.int64)))
    assert not np.shares_memory(x.numpy(), stream), 'a batch owns its memory: the model cannot write into the corpus'
    # allocations while producing a batch (after the epoch's stream exists) are a few batches' worth, not the stream's
    shuffled = LMDataLoader(ids, offsets, bs=32, seq_len=70, shuffle=True, seed=0)
    it = iter(shuffled)
    next(it)  # builds the epoch stream (the one O(corpus) step per epoch)
    tracemalloc.start()
    try:
        for _ in range(5): next(it)
        _, peak = tracemalloc.get_traced_memory()
    finally: tracemalloc.stop()
    batch_bytes = 32 * 70 * 8
    assert peak < 10 * batch_bytes < stream.nbytes / 40, f'{peak} bytes allocated for batches of {batch_bytes}'


def test_lm_errors():
    with pytest.raises(ValueError, match=r'100 tokens.*bs=64.*seq_len=72.*use bs <= 1 or a shorter seq_len'):
        LMDataLoader(*corpus([50, 50]), bs=64, seq_len=72)
    with pytest.raises(ValueError, match=r'use bs <= 13 or a shorter seq_len'):
        LMDataLoader(*corpus([1000]), bs=64, seq_len=72)
    with pytest.raises(ValueError, match=r'use bs=1 and seq_len <= 19'):
        LMDataLoader(*corpus([20]), bs=64, seq_len=72)
    with pytest.raises(ValueError, match='empty'): LMDataLoader(np.zeros(0, np.int32), np.zeros(1, np.int64))
    with pytest.raises(ValueError, match='empty'): LMDataLoader(np.zeros(0, np.int32), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match='non-decreasing'): LMDataLoader(np.arange(10), np.array([0, 6, 4, 10]))
    with pytest.raises(ValueError, match='non-decreasing'): LMDataLoader(np.arange(10), np.array([0, 11]))
    with pytest.raises(TypeError, match='flat array of integer'): LMDataLoader(np.zeros((2, 5), np.int32), np.array([0, 5]))
    with pytest.raises(ValueError, match='at least 1'): LMDataLoader(*corpus([100]), bs=0)


def test_lm_device_and_dataset_order_hook():
    ids, offsets = corpus(random_lengths(30))
    dl = LMDataLoader(ids, offsets, bs=2, seq_len=8, shuffle=True, seed=0, vary_seq_len=True, device='cpu')
    x, y = next(iter(dl))
    assert x.device.type == 'cpu'
    ordered, order = dl.in_dataset_order()
    assert order is None and not ordered.shuffle and not ordered.vary_seq_len and len(ordered) == len(dl)
    assert rows(epoch(ordered)).flatten().tolist() == list(range(2 * dl.row_len))
    plain = LMDataLoader(ids, offsets, bs=2, seq_len=8)
    assert plain.in_dataset_order() == (plain, None)


class TinyLM(nn.Module):
    def __init__(self, vocab_sz: int):
        super().__init__()
        self.emb, self.rnn, self.dec = nn.Embedding(vocab_sz, 8), nn.LSTM(8, 16, batch_first=True), nn.Linear(16, vocab_sz)
        self.hidden = None
    def forward(self, x):
        if self.hidden is not None and self.hidden[0].shape[1] != len(x): self.hidden = None
        out, hidden = self.rnn(self.emb(x), self.hidden)
        self.hidden = tuple(h.detach() for h in hidden)
        return self.dec(out)


class ResetState(Callback):
    def before_train(self, learn): learn.model.hidden = None
    def before_validate(self, learn): learn.model.hidden = None


def lm_loss(pred, targ): return F.cross_entropy(pred.flatten(0, 1), targ.flatten())


def test_lm_loader_trains_with_the_learner(tmp_path):
    # a predictable "language": each document counts up modulo 20
    docs = [np.arange(s, s + n) % 20 for s, n in zip(range(300), random_lengths(300, lo=5, hi=30))]
    ids, offsets = np.concatenate(docs).astype(np.int32), np.concatenate([[0], np.cumsum([len(d) for d in docs])])
    cut = offsets[250]
    trn = LMDataLoader(ids[:cut], offsets[:251], bs=8, seq_len=12, shuffle=True, seed=0)
    val = LMDataLoader(ids[cut:], offsets[250:] - cut, bs=8, seq_len=12)
    set_seed(0)
    learn = Learner(DataLoaders(trn, val), TinyLM(20), lm_loss, lr=3e-2, metrics=[accuracy], cbs=[ResetState()],
                    path=tmp_path, device='cpu', default_cbs=True)
    learn.fit(2)
    _, _, valid_loss, acc, _ = learn.recorder.values[-1]
    assert valid_loss < math.log(20) and acc > 0.5


# ---- SortedDataLoader -----------------------------------------------------------------------------------------------
PAD = 1


def clas_corpus(n: int = 300, lo: int = 1, hi: int = 80, seed: int = 0):
    lengths = random_lengths(n, lo, hi, seed)
    ids, offsets = corpus(lengths, first_id=10)  # real ids never equal the padding id
    return ids, offsets, lengths


def check_batch(dl, x, y, ids, offsets, lengths):
    assert x.dtype == torch.int64 and x.shape == (len(y), lengths[y.numpy()].max())
    assert (x[:, -1] != dl.pad_idx).all(), 'the last position is always a real token'
    mask = x != dl.pad_idx
    assert torch.equal(mask.sum(1), torch.as_tensor(lengths[y.numpy()])), 'the mask counts the real tokens'
    assert torch.equal(mask, mask.cummax(1).values), 'padding only at the start'
    for row, i in zip(x, y.tolist()):
        assert row[-lengths[i]:].tolist() == ids[offsets[i]:offsets[i + 1]].tolist(), 'labels follow their documents'


@pytest.mark.parametrize('shuffle', [False, True])
def test_sorted_padding_masks_and_labels(shuffle):
    ids, offsets, lengths = clas_corpus()
    dl = SortedDataLoader(ids, offsets, torch.arange(len(lengths)), bs=16, shuffle=shuffle, seed=0, chunk_mult=4)
    assert dl.pad_idx == PAD and (dl.lengths == lengths).all() and len(dl) == math.ceil(300 / 16)
    for _ in range(2):
        batches = epoch(dl)
        assert len(batches) == len(dl)
        for x, y in batches: check_batch(dl, x, y, ids, offsets, lengths)
        seen = torch.cat([y for _, y in batches]).tolist()
        assert sorted(seen) == list(range(300)), 'every document exactly once per epoch'


def test_sorted_custom_pad_idx_and_multi_hot_labels():
    ids, offsets, lengths = clas_corpus(50)
    labels = (torch.rand(50, 4, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    dl = SortedDataLoader(ids, offsets, labels, bs=8, pad_idx=0)
    for x, y in dl:
        assert y.dtype == torch.float32 and y.shape[1] == 4
        assert (x[:, -1] != 0).all()
    ordered, order = dl.in_dataset_order()
    ys = torch.cat([y for _, y in ordered])
    assert torch.equal(ys, labels[torch.as_tensor(order)])


def test_sorted_validation_order():
    ids, offsets, lengths = clas_corpus(200, hi=20)  # many ties
    dl = SortedDataLoader(ids, offsets, torch.arange(200), bs=16)
    order = torch.cat([y for _, y in dl]).numpy()
    assert (np.diff(lengths[order]) <= 0).all(), 'longest first'
    for l in np.unique(lengths):
        same = order[lengths[order] == l]
        assert (np.diff(same) > 0).all(), 'ties keep dataset order'
    assert all(torch.equal(a[0], b[0]) for a, b in zip(dl, dl)), 'the same batches every epoch'


def test_sorted_training_batches_group_lengths_and_start_with_the_longest():
    ids, offsets, lengths = clas_corpus(2000, hi=500)
    dl = SortedDataLoader(ids, offsets, torch.arange(2000), bs=32, shuffle=True, seed=0, chunk_mult=10)
    rng = np.random.default_rng(1)
    random_spread = np.mean([np.ptp(lengths[rng.permutation(2000)[:32]]) for _ in range(200)])
    firsts = []
    for _ in range(3):
        batches = epoch(dl)
        spread = np.mean([np.ptp(lengths[y.numpy()]) for _, y in batches])
        assert spread < random_spread / 4, (spread, random_spread)
        x0, y0 = batches[0]
        assert lengths[y0.numpy()].max() == lengths.max() and x0.shape[1] == lengths.max(), 'the longest batch first'
        firsts.append(torch.cat([y for _, y in batches]).tolist())
    assert firsts[0] != firsts[1] != firsts[2], 'a new order every epoch'


def test_sorted_batch_idxs_is_what_iteration_yields():
    ids, offsets, lengths = clas_corpus(100)
    dl = SortedDataLoader(ids, offsets, torch.arange(100), bs=8, shuffle=True, seed=4, chunk_mult=2)
    for e in range(3):
        planned = dl.batch_idxs()
        assert [a.tolist() for a in planned] == [a.tolist() for a in dl.batch_idxs(e)]
        got = [y.tolist() for _, y in dl]
        assert got == [a.tolist() for a in planned]
    same = SortedDataLoader(ids, offsets, torch.arange(100), bs=8, shuffle=True, seed=4, chunk_mult=2)
    assert [a.tolist() for a in same.batch_idxs(2)] == [a.tolist() for a in dl.batch_idxs(2)], 'same seed, same batches'


def test_sorted_without_labels_and_device():
    ids, offsets, lengths = clas_corpus(20)
    batches = epoch(SortedDataLoader(ids, offsets, None, bs=8, device='cpu'))
    assert all(len(b) == 1 and b[0].device.type == 'cpu' for b in batches)
    assert sum(len(b[0]) for b in batches) == 20


def test_sorted_in_dataset_order_restores_order():
    ids, offsets, lengths = clas_corpus(77)
    dl = SortedDataLoader(ids, offsets, torch.arange(77), bs=10, shuffle=True, seed=0)
    ordered, order = dl.in_dataset_order()
    assert not ordered.shuffle and ordered.bs == 10 and ordered.pad_idx == dl.pad_idx
    ys = torch.cat([y for _, y in ordered])
    assert ys.tolist() == order, 'order lists the dataset index of each item as yielded'
    assert ys[torch.as_tensor(order).argsort()].tolist() == list(range(77))
    valid = SortedDataLoader(ids, offsets, torch.arange(77), bs=10)
    assert valid.in_dataset_order()[0] is valid


def test_sorted_errors():
    ids, offsets = corpus([3, 0, 4, 0])
    with pytest.raises(ValueError, match=r'document 1 has no tokens \(and 1 more\)'): SortedDataLoader(ids, offsets)
    ids, offsets = corpus([3, 4])
    with pytest.raises(ValueError, match='3 labels for 2 documents'): SortedDataLoader(ids, offsets, torch.arange(3))
    with pytest.raises(ValueError, match='no documents'): SortedDataLoader(np.zeros(0, np.int32), np.zeros(1, np.int64))
    with pytest.raises(ValueError, match='at least 1'): SortedDataLoader(ids, offsets, bs=0)


class MeanPool(nn.Module):
    "Embedding, mean over the non-padding positions, linear."
    def __init__(self, vocab_sz: int, n_out: int, pad_idx: int = PAD):
        super().__init__()
        self.emb, self.lin, self.pad_idx = nn.Embedding(vocab_sz, 8), nn.Linear(8, n_out), pad_idx
    def forward(self, x):
        mask = (x != self.pad_idx).unsqueeze(-1).float()
        return self.lin((self.emb(x) * mask).sum(1) / mask.sum(1))


def test_sorted_loader_with_learner_fit_and_get_preds(tmp_path):
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 40, 120)
    ids, offsets = corpus(lengths)
    ids = (ids % 50 + 2).astype(np.int32)
    labels = torch.as_tensor((lengths > 20).astype(np.int64))
    set_seed(0)
    model = MeanPool(60, 2)
    trn = SortedDataLoader(ids, offsets, labels, bs=16, shuffle=True, seed=0)
    val = SortedDataLoader(ids, offsets, labels, bs=16)
    learn = Learner(DataLoaders(trn, val), model, F.cross_entropy, metrics=[accuracy], path=tmp_path, device='cpu')
    learn.fit(1)
    assert len(learn.recorder.losses) == len(trn)
    with torch.no_grad():
        alone = torch.cat([model(torch.as_tensor(ids[offsets[i]:offsets[i + 1]], dtype=torch.long)[None])
                           for i in range(len(lengths))]).softmax(-1)
    for dl in (trn, val):
        preds, targs = learn.get_preds(dl=dl)
        assert torch.equal(targs, labels), 'targets in dataset order'
        assert torch.allclose(preds, alone, atol=1e-5), 'predictions in dataset order, padding masked'
    test = SortedDataLoader(ids, offsets, None, bs=16)
    (preds,) = learn.get_preds(dl=test, with_targs=False)
    assert torch.allclose(preds, alone, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_loaders_move_batches_to_cuda():
    ids, offsets, lengths = clas_corpus(40)
    x, y = next(iter(SortedDataLoader(ids, offsets, torch.arange(40), bs=8, shuffle=True, seed=0, device='cuda')))
    assert x.is_cuda and y.is_cuda and (x[:, -1] != PAD).all()
    x, y = next(iter(LMDataLoader(ids, offsets, bs=4, seq_len=10, device='cuda')))
    assert x.is_cuda and y.is_cuda and torch.equal(y[:, :-1], x[:, 1:])


def test_training_never_yields_a_batch_of_one():
    "BatchNorm cannot train on one item: a leftover single document joins another batch, and none is dropped."
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 30, 33)
    ids = rng.integers(2, 50, lengths.sum()).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    dl = SortedDataLoader(ids, offsets, torch.arange(33), bs=8, shuffle=True, seed=0)
    batches = list(dl)
    assert len(batches) == len(dl) == 4 and min(len(b[0]) for b in batches) > 1
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == list(range(33))
    valid = SortedDataLoader(ids, offsets, torch.arange(33), bs=8)
    assert len(valid) == 5, "validation keeps plain batches (evaluation handles a batch of one)"
