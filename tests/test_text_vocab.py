"""Vocab: the invariants of `from_counts`, round trips, `remap`, and the errors of `load`."""
import json
import random
from collections import Counter

import numpy as np
import pytest
import torch

from ulmfit_learner.text.vocab import FAKE_TOKEN, SPECIAL_TOKENS, Vocab


def random_counts(n: int = 500, seed: int = 0) -> Counter:
    "Zipf-like counts over `n` made-up words, with many ties, plus some special tokens counted like words."
    rng = random.Random(seed)
    words = [f'w{i}' for i in range(n)]
    c = Counter({w: max(1, int(1000 / (i + 1) ** 1.1) + rng.randint(0, 2)) for i, w in enumerate(words)})
    c.update({'xxbos': 400, 'xxmaj': 50, 'xxunk': 2})
    return c


def check_invariants(v: Vocab, counts: Counter, min_freq: int, max_vocab: int) -> None:
    itos = v.itos
    assert itos[:len(SPECIAL_TOKENS)] == SPECIAL_TOKENS
    assert v.stoi['xxunk'] == 0 and v.stoi['xxpad'] == 1
    assert len(v) % 8 == 0 and len(v) <= max_vocab
    real = [t for t in itos if t != FAKE_TOKEN]
    assert len(real) == len(set(real)), 'no duplicates'
    words = real[len(SPECIAL_TOKENS):]
    assert all(counts[t] >= min_freq for t in words), 'min_freq respected'
    assert all(t not in SPECIAL_TOKENS for t in words)
    keys = [(-counts[t], t) for t in words]
    assert keys == sorted(keys), 'by count descending, ties alphabetical'
    fakes = itos[len(real):]
    assert fakes == [FAKE_TOKEN] * len(fakes) and len(fakes) < 8, 'fake tokens only at the end, fewer than 8'
    assert all(v.stoi[t] == i for i, t in enumerate(real)), 'stoi is the inverse of itos'
    assert all(v.itos[i] == t for t, i in v.stoi.items())


@pytest.mark.parametrize('min_freq,max_vocab', [(1, 60000), (3, 60000), (5, 104), (2, 100), (1, 16), (50, 60000)])
def test_from_counts_invariants(min_freq, max_vocab):
    counts = random_counts()
    v = Vocab.from_counts(counts, min_freq=min_freq, max_vocab=max_vocab)
    check_invariants(v, counts, min_freq, max_vocab)


def test_from_counts_keeps_every_frequent_token_when_there_is_room():
    counts = random_counts()
    v = Vocab.from_counts(counts, min_freq=3)
    expected = {t for t, c in counts.items() if c >= 3} - set(SPECIAL_TOKENS)
    assert set(v.itos[len(SPECIAL_TOKENS):]) - {FAKE_TOKEN} == expected


def test_from_counts_cut_keeps_the_most_frequent():
    counts = random_counts()
    v = Vocab.from_counts(counts, min_freq=1, max_vocab=100)
    assert len(v) == 96, 'max_vocab=100 is cut at the multiple of 8 below it'
    kept = v.itos[len(SPECIAL_TOKENS):]
    dropped = set(counts) - set(v.itos)
    assert min(counts[t] for t in kept) >= max(counts[t] for t in dropped)


def test_from_counts_is_deterministic_whatever_the_input_order():
    counts = random_counts()
    items = list(counts.items())
    random.Random(1).shuffle(items)
    a = Vocab.from_counts(counts)
    b = Vocab.from_counts([t for t, _ in items], np.array([c for _, c in items], dtype=np.int64))
    assert a == b


def test_from_counts_adds_repeated_tokens_and_checks_lengths():
    v = Vocab.from_counts(['b', 'a', 'b'], [2, 3, 2], min_freq=3)
    assert v.itos[9:11] == ['b', 'a']
    with pytest.raises(ValueError, match='3 tokens but 2 counts'): Vocab.from_counts(['a', 'b', 'c'], [1, 2])
    with pytest.raises(TypeError, match='mapping'): Vocab.from_counts(['a', 'b'])
    with pytest.raises(ValueError, match='at least 16'): Vocab.from_counts(Counter('abc'), max_vocab=12)


def test_exact_multiple_of_8_gets_no_padding():
    v = Vocab.from_counts({f'w{i}': 5 for i in range(7)})
    assert len(v) == 16 and FAKE_TOKEN not in v


def test_round_trip_tokens_ids_tokens():
    counts = random_counts()
    v = Vocab.from_counts(counts, min_freq=1)
    doc = ['xxbos', 'xxmaj'] + random.Random(0).choices(list(counts), k=200)
    ids = v.numericalize(doc)
    assert ids.dtype == np.int64
    assert v.decode(ids) == doc
    assert v.decode(torch.from_numpy(ids)) == doc and v.decode(ids.tolist()) == doc


def test_unknown_tokens_are_xxunk():
    v = Vocab.from_counts(random_counts(), min_freq=3)
    ids = v.numericalize(['xxbos', 'never-seen', 'w0'])
    assert ids[1] == 0 and v.decode(ids)[1] == 'xxunk' and ids[2] == v.stoi['w0']
    with pytest.raises(IndexError, match='out of range'): v.decode([len(v)])
    with pytest.raises(IndexError, match='out of range'): v.decode([-1])


def test_remap_equals_per_token_numericalize():
    counts = random_counts()
    v = Vocab.from_counts(counts, min_freq=4)
    corpus_tokens = list(counts) + ['unseen-a', 'unseen-b']
    random.Random(2).shuffle(corpus_tokens)
    table = v.remap(corpus_tokens)
    assert table.dtype == np.int32 and table.shape == (len(corpus_tokens),)
    assert table.tolist() == v.numericalize(corpus_tokens).tolist()
    corpus_ids = np.random.default_rng(0).integers(0, len(corpus_tokens), 1000).astype(np.int32)
    assert table[corpus_ids].tolist() == v.numericalize([corpus_tokens[i] for i in corpus_ids]).tolist()
    assert v.remap([]).shape == (0,)


def test_container_protocol():
    v = Vocab(SPECIAL_TOKENS + ['a', 'b'])
    assert len(v) == 11 and v[9] == 'a' and v[:2] == ['xxunk', 'xxpad'] and list(v) == v.itos
    assert 'a' in v and 'z' not in v
    assert v == Vocab(list(v)) and v == list(v) and v != Vocab(SPECIAL_TOKENS)
    assert 'Vocab(11 tokens' in repr(v)
    with pytest.raises(ValueError, match="'a' appears twice"): Vocab(['a', 'b', 'a'])
    with pytest.raises(TypeError, match='list of strings'): Vocab(['a', 3])


@pytest.mark.parametrize('min_freq, max_vocab', [(1, 60000), (2, 60000), (1, 24), (3, 40)])
def test_extend_keeps_every_id_and_adds_the_missing_tokens_once(min_freq, max_vocab):
    v = Vocab.from_counts(random_counts(), min_freq=min_freq, max_vocab=max_vocab)
    other = Vocab.from_counts(random_counts(seed=1), min_freq=1)
    w = v.extend(other)
    assert all(w.stoi[t] == i for t, i in v.stoi.items() if t != FAKE_TOKEN), 'no real token moves'
    real = lambda voc: [t for t in voc if t != FAKE_TOKEN]
    assert set(real(w)) == set(real(v)) | set(real(other)) and len(real(w)) == len(set(real(w)))
    assert len(w) % 8 == 0 and len(w) - len(real(w)) < 8, 'filler only to the next multiple of 8'
    added = [t for t in real(w) if t not in v]
    assert added == [t for t in real(other) if t not in v], "the added tokens keep the other vocab's order"
    assert w.extend(other) == w and v.extend([]) == v


def test_extend_of_a_vocab_with_inner_filler_or_bad_tokens():
    v = Vocab(SPECIAL_TOKENS + ['a', FAKE_TOKEN, 'b'])  # a hand-made vocab: filler in the middle stays where it is
    w = v.extend(['c', 'a'])
    assert w.itos[:12] == v.itos and w.itos[12] == 'c' and len(w) == 16
    with pytest.raises(TypeError, match='not one string'): v.extend('abc')
    with pytest.raises(TypeError, match='list of strings'): v.extend(['d', 4])


def test_save_load_round_trip(tmp_path):
    v = Vocab.from_counts(random_counts(), min_freq=2)
    v2 = Vocab(SPECIAL_TOKENS + ['Übermut', 'naïve', '日本', '"quoted"'])
    for vocab in (v, v2):
        f = vocab.save(tmp_path / 'sub' / 'vocab.json')
        loaded = Vocab.load(f)
        assert loaded == vocab and loaded.stoi == vocab.stoi
    data = json.loads((tmp_path / 'sub' / 'vocab.json').read_text(encoding='utf-8'))
    assert data['format'] == 'ulmfit_learner.vocab' and data['version'] == 1 and isinstance(data['itos'], list)


def test_load_rejects_other_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='no vocab file'): Vocab.load(tmp_path / 'missing.json')
    (tmp_path / 'list.json').write_text(json.dumps(SPECIAL_TOKENS))
    with pytest.raises(ValueError, match='not a vocab file'): Vocab.load(tmp_path / 'list.json')
    (tmp_path / 'other.json').write_text('{"itos_typo": []}')
    with pytest.raises(ValueError, match='not a vocab file'): Vocab.load(tmp_path / 'other.json')
    (tmp_path / 'weights.bin').write_bytes(b'\x80\x04\x95 not json')
    with pytest.raises(ValueError, match='not a vocab file'): Vocab.load(tmp_path / 'weights.bin')
    (tmp_path / 'newer.json').write_text(json.dumps({'format': 'ulmfit_learner.vocab', 'version': 99, 'itos': []}))
    with pytest.raises(ValueError, match='newer'): Vocab.load(tmp_path / 'newer.json')
