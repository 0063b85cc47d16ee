"""Tokenization: every rule, special tokens, `Tokenizer` end to end and `decode`, `join_fields`, and `tokenize_texts`
(chunks, workers, cache, bad input, a worker that dies), plus SentencePiece trained on TREC."""
import multiprocessing
import os
import pickle
import re

import numpy as np
import pandas as pd
import pytest

from ulmfit_learner.text import tokenize as tokenize_module
from ulmfit_learner.text.tokenize import (BOS, DEFAULT_POST_RULES, DEFAULT_PRE_RULES, MAJ, SPECIAL_TOKENS, UP,
                                          SentencePieceTokenizer, SpacyTokenizer, TokenizedCorpus, Tokenizer,
                                          fix_html, join_fields, replace_all_caps, replace_maj, replace_rep,
                                          replace_wrep, rm_useless_spaces, spec_add_spaces, tokenize_texts, tokenwise)

from conftest import DATA


@pytest.fixture(scope='module')
def reviews() -> list:
    return pd.read_csv(DATA / 'imdb' / 'train.csv.xz', keep_default_na=False, nrows=60)['text'].tolist()


@pytest.fixture(scope='module')
def tok() -> Tokenizer:
    return Tokenizer()


# ---------------------------------------------------------------- rules

def test_special_tokens_order():
    assert SPECIAL_TOKENS == ['xxunk', 'xxpad', 'xxbos', 'xxeos', 'xxfld', 'xxrep', 'xxwrep', 'xxup', 'xxmaj']
    assert DEFAULT_PRE_RULES == [fix_html, replace_rep, replace_wrep, spec_add_spaces, rm_useless_spaces]
    assert DEFAULT_POST_RULES == [replace_all_caps, replace_maj]


@pytest.mark.parametrize('raw, clean', [
    ('a<br /><br />b', 'a\n\nb'),
    ('a<br/>b<BR>c<br  />', 'a\nb\nc\n'),
    ('&amp; &lt;3 &gt; &quot;q&quot; it&#39;s &#x27;', '& <3 > "q" it\'s \''),
    ('it#39;s quot;x quot; R amp; D', 'it\'s "x " R & D'),
    ('a nbsp;b #36;5 #146;', "a  b $5 '"),
    ('Tramp; champ; #39', 'Tramp; champ; #39'),
    ('1 @,@ 000 @-@ page 3 @.@ 5 <unk>', '1,000-page 3.5 xxunk'),
    ('one\\ntwo say \\"hi\\"', 'one\ntwo say "hi"'),
    ('', ''),
    ('plain text, nothing to fix.', 'plain text, nothing to fix.'),
    ('wait... what.... no.. ...', 'wait… what.... no.. …'),
    ('1990\x962000 \x85 \x91a\x92 \x93b\x94 \x97 \x80', '1990–2000 … ‘a’ “b” — €'),
    ('\x81\x8d\x8f\x90\x9d', '\x81\x8d\x8f\x90\x9d'),
])
def test_fix_html(raw, clean):
    assert fix_html(raw) == clean


@pytest.mark.parametrize('raw, out', [
    ('sooo', 's xxrep 3 o '),
    ('!!!!', ' xxrep 4 ! '),
    ('!!', '!!'),
    ('aaabbbbb', ' xxrep 3 a  xxrep 5 b '),
    ('1000', '1 xxrep 3 0 '),
    ('...', ' xxrep 3 . '),
    ('a      b\n\n\n\t\t\t', 'a      b\n\n\n\t\t\t'),
    ('', ''),
])
def test_replace_rep(raw, out):
    assert replace_rep(raw) == out


@pytest.mark.parametrize('raw, out', [
    ('very very very good', ' xxwrep 3 very  good'),
    ('no no no no!', ' xxwrep 4 no !'),
    ('very very good', 'very very good'),
    ('No no no', 'No no no'),
    ('ha ha haha ha', 'ha ha haha ha'),
    ('aha ha ha', 'aha ha ha'),
    ('(go go go)', '( xxwrep 3 go )'),
    ('ha\nha\n\nha', ' xxwrep 3 ha '),
    ('1 1 1', ' xxwrep 3 1 '),
    ('', ''),
])
def test_replace_wrep(raw, out):
    assert replace_wrep(raw) == out


def test_spec_add_spaces_and_rm_useless_spaces():
    assert spec_add_spaces('8/10') == '8 / 10'
    assert spec_add_spaces('#1 and #2') == ' # 1 and  # 2'
    assert spec_add_spaces('c:\\x') == 'c: \\ x'
    assert spec_add_spaces('') == '' and spec_add_spaces('abc') == 'abc'
    assert rm_useless_spaces('a  b     c') == 'a b c'
    assert rm_useless_spaces('a \n\n  b\t\tc') == 'a \n\n b\t\tc', 'only spaces are collapsed'
    assert rm_useless_spaces('   ') == ' ' and rm_useless_spaces('') == ''


def test_replace_all_caps():
    assert replace_all_caps(['GREAT']) == [UP, 'great']
    assert replace_all_caps(['I', 'A']) == ['I', 'A'], 'a single capital is not shouting'
    assert replace_all_caps(['U.S.', 'ABC123', 'N\'T']) == [UP, 'u.s.', UP, 'abc123', UP, "n't"]
    assert replace_all_caps(['Hello', 'hello', '123', '!!', '']) == ['Hello', 'hello', '123', '!!', '']
    assert replace_all_caps(['ÉCOLE']) == [UP, 'école']
    assert replace_all_caps([]) == []


def test_replace_maj_lowercases_everything():
    assert replace_maj(['Hello']) == [MAJ, 'hello']
    assert replace_maj(['I', 'A']) == ['i', 'a'], 'single letters: no marker, lower-cased'
    assert replace_maj(['iPhone', 'McDonald', 'HELLO', 'hello']) == ['iphone', 'mcdonald', 'hello', 'hello']
    assert replace_maj(['Élan', 'X-ray', 'Ab1']) == [MAJ, 'élan', MAJ, 'x-ray', MAJ, 'ab1']
    assert replace_maj(['xxup', 'xxmaj', '\n\n', '']) == ['xxup', 'xxmaj', '\n\n', '']
    assert replace_maj(replace_all_caps(['This', 'is', 'GREAT', 'iPhone'])) == [MAJ, 'this', 'is', UP, 'great', 'iphone']


def test_post_rules_are_tokenwise():
    "Marked rules map each token on its own: applying them to the list equals applying them token by token."
    toks = ['This', 'GREAT', 'iPhone', 'I', 'U.S.', 'x', '\n\n', "Don't"]
    for rule in DEFAULT_POST_RULES:
        assert rule.tokenwise
        assert rule(toks) == [o for t in toks for o in rule([t])]


# ---------------------------------------------------------------- base tokenizers and Tokenizer

def test_spacy_tokenizer_whitespace_and_specials():
    st = SpacyTokenizer()
    assert st(['Two\n\nparagraphs\r\nhere\tand\xa0there  ok', '', ' \n ']) == [
        ['Two', '\n\n', 'paragraphs', '\n', 'here', 'and', 'there', 'ok'], [], ['\n']]
    for special in SPECIAL_TOKENS:
        assert st([f'({special}) {special}, x{special} {special}!']) == [
            ['(', special, ')', special, ',', f'x{special}', special, '!']]


def test_spacy_tokenizer_matches_spacy_on_whole_documents(reviews):
    "Tokenizing distinct words gives what spaCy gives on whole documents (whitespace tokens normalised)."
    st = SpacyTokenizer()
    nlp = st._spacy_tokenizer()
    texts = [fix_html(t) for t in reviews] + ["Don't go to the U.S. at 5pm!!! e-mail me: a@b.com :) (really)"]

    def whole(t):
        out = []
        for w in nlp(t):
            if not w.text.isspace(): out.append(w.text)
            elif '\n' in w.text: out.append('\n' * w.text.count('\n'))
        return out
    assert st(texts) == [whole(t) for t in texts]


def test_words_tokenize_independently_of_neighbours():
    "On whole documents spaCy's special-case matcher can reach across a space; word by word it cannot."
    st = SpacyTokenizer()
    assert st(["x'' ''villain"]) == [st(["x''"])[0] + st(["''villain"])[0]] == [['x', "''", "''", 'villain']]


def test_spacy_tokenizer_pickles_without_spacy_object():
    st = SpacyTokenizer('en')
    st(['warm it up'])
    clone = pickle.loads(pickle.dumps(st))
    assert clone._tok is None and clone.lang == 'en' and clone(['a b']) == [['a', 'b']]
    assert clone.settings() == st.settings()


def test_tokenizer_end_to_end(tok):
    texts = ['This is GREAT!!!! <br /><br />I loved it',
             "I'm sooo happy, very very very happy &amp; it's 8/10.",
             'xxfld 1 An iPhone review',
             '']
    assert tok(texts) == [
        ['xxbos', 'xxmaj', 'this', 'is', 'xxup', 'great', 'xxrep', '4', '!', '\n\n', 'i', 'loved', 'it'],
        ['xxbos', 'i', "'m", 's', 'xxrep', '3', 'o', 'happy', ',', 'xxwrep', '3', 'very', 'happy', '&', 'it', "'s",
         '8', '/', '10', '.'],
        ['xxbos', 'xxfld', '1', 'xxmaj', 'an', 'iphone', 'review'],
        ['xxbos']]


def test_rules_can_be_switched_off_or_replaced():
    raw = Tokenizer(pre_rules=[], post_rules=[], add_bos=False)
    assert raw(['GREAT!!!! Hi']) == [['GREAT', '!', '!', '!', '!', 'Hi']]
    only_maj = Tokenizer(pre_rules=[], post_rules=[replace_maj])
    assert only_maj(['GREAT Hi']) == [[BOS, 'great', MAJ, 'hi']]
    shout = Tokenizer(pre_rules=[str.upper], post_rules=[])
    assert shout(['hi there']) == [[BOS, 'HI', 'THERE']]


def test_post_rule_results_follow_rule_changes():
    "Post-rule results are remembered per distinct token, but never across a change of the rules."
    t = Tokenizer(pre_rules=[])
    assert t(['Hello HI']) == [[BOS, MAJ, 'hello', UP, 'hi']]
    t.post_rules = [replace_all_caps]
    assert t(['Hello HI']) == [[BOS, 'Hello', UP, 'hi']]
    t.post_rules.append(replace_maj)  # changed in place
    assert t(['Hello HI']) == [[BOS, MAJ, 'hello', UP, 'hi']]


def drop_short(tokens):
    "A post-rule that looks at neighbours: drop a token equal to the one before it (not tokenwise)."
    return [t for i, t in enumerate(tokens) if i == 0 or tokens[i - 1] != t]


@tokenwise
def no_vowels(tokens):
    return [re.sub('[aeiou]', '', t) or '_' for t in tokens]


def test_custom_post_rules_slow_and_fast_paths():
    assert Tokenizer(post_rules=[drop_short])(['a a b b a', '']) == [[BOS, 'a', 'b', 'a'], [BOS]]
    fast = Tokenizer(post_rules=[replace_maj, no_vowels])(['Ai love it', 'a'])
    slow = Tokenizer(post_rules=[replace_maj, no_vowels, drop_short])(['Ai love it', 'a'])
    assert fast == [[BOS, 'xxmj', '_', 'lv', 't'], [BOS, '_']]
    assert slow == fast


def test_custom_base_tokenizer():
    t = Tokenizer(lambda texts: [s.split() for s in texts], pre_rules=[])
    assert t(['Hello WORLD  x']) == [[BOS, MAJ, 'hello', UP, 'world', 'x']]
    gen = Tokenizer(lambda texts: (s.split() for s in texts), pre_rules=[], post_rules=[], add_bos=False)
    assert gen(['a b', '']) == [['a', 'b'], []]
    with pytest.raises(ValueError, match='returned 1 token lists for 2 texts'):
        Tokenizer(lambda texts: [['x']])(['a', 'b'])


def test_encode_is_compact_form_of_call(tok, reviews):
    tokens, ids, lengths = tok.encode(reviews[:20])
    assert ids.dtype == np.int32 and lengths.dtype == np.int64 and len(tokens) == len(set(tokens))
    assert lengths.sum() == len(ids) and ids.max() == len(tokens) - 1
    assert tokens[0] == BOS, 'ids are numbered by first appearance'
    flat = [tokens[i] for i in ids]
    docs = tok(reviews[:20])
    assert flat == [t for d in docs for t in d] and lengths.tolist() == [len(d) for d in docs]


@pytest.mark.parametrize('bad, err, what', [
    (None, ValueError, 'missing'), (float('nan'), ValueError, 'missing'), (pd.NA, ValueError, 'missing'),
    (3, TypeError, 'not a string'), (b'bytes', TypeError, 'not a string')])
def test_tokenizer_bad_input_names_document(tok, bad, err, what):
    with pytest.raises(err, match=f'document 2 .*{what}'):
        tok(['fine', '', bad])


def test_tokenizer_wants_a_list(tok):
    with pytest.raises(TypeError, match='list of texts'):
        tok('one text')


def test_settings(tok):
    import json
    s = tok.settings()
    assert json.loads(json.dumps(s)) == s
    assert s == Tokenizer().settings() == pickle.loads(pickle.dumps(tok)).settings()
    assert s['tok']['name'] == 'spacy' and s['add_bos'] is True
    variants = [Tokenizer(pre_rules=[]), Tokenizer(post_rules=[replace_maj]), Tokenizer(add_bos=False),
                Tokenizer(SpacyTokenizer('fr')), Tokenizer(post_rules=[lambda t: t]), Tokenizer(post_rules=[lambda t: t[:1]])]
    keys = [json.dumps(v.settings(), sort_keys=True) for v in variants + [tok]]
    assert len(set(keys)) == len(keys), 'every change of rules or tokenizer changes the settings'


def test_decode(tok):
    assert tok.decode(['xxbos', 'xxmaj', 'this', 'is', 'xxup', 'great', 'xxrep', '4', '!', '\n\n', 'i', 'loved', 'it']) \
        == 'This is GREAT!!!!\n\ni loved it'
    assert tok.decode(['xxwrep', '3', 'very', 'good', ',', 'really', '.']) == 'very very very good, really.'
    assert tok.decode(['xxwrep', '2', 'xxmaj', 'no', '(', 'xxup', 'ok', ')', 'do', "n't", 'it', "'s"]) == \
        "No No (OK) don't it's"
    assert tok.decode(['xxpad', 'xxpad', 'xxbos', 'a', 'xxunk', 'xxfld', '1']) == 'a xxunk xxfld 1'
    assert tok.decode(['xxrep', 'x', 'xxmaj']) == 'xxrep x xxmaj', 'malformed markers are shown as they are'
    assert tok.decode([]) == ''


def test_decode_round_trip_for_display(tok):
    for text in ['This is GREAT!!!! And I mean it.', 'Very, very bad (really)!', "Don't watch it; it's long.",
                 'Wait… what?',
                 'Who is the president of France?', 'No no no no!!!']:
        assert tok.decode(tok([text])[0]) == text.replace('I mean', 'i mean')


def test_join_fields(tok):
    assert join_fields(['title', 'body text']) == 'xxfld 1 title xxfld 2 body text'
    assert join_fields(['only']) == 'xxfld 1 only'
    assert tok([join_fields(['A Title', 'b'])]) == [[BOS, 'xxfld', '1', 'a', MAJ, 'title', 'xxfld', '2', 'b']]
    with pytest.raises(TypeError, match='field 1'):
        join_fields(['a', None])


# ---------------------------------------------------------------- tokenize_texts

def check_corpus(tc: TokenizedCorpus, tok: Tokenizer, texts: list) -> None:
    docs = tok(texts)
    assert len(tc) == len(texts) and tc.offsets[0] == 0 and tc.offsets[-1] == tc.n_tokens == len(tc.ids)
    assert tc.ids.dtype == np.int32 and tc.offsets.dtype == np.int64 and tc.counts.dtype == np.int64
    assert tc.lengths.tolist() == [len(d) for d in docs]
    assert [tc.doc_tokens(i) for i in range(len(tc))] == docs
    assert len(tc.tokens) == len(set(tc.tokens)) == len(tc.counts)
    from collections import Counter
    expected = Counter(t for d in docs for t in d)
    assert dict(zip(tc.tokens, tc.counts.tolist())) == dict(expected)


def same(a: TokenizedCorpus, b: TokenizedCorpus) -> bool:
    return (a.tokens == b.tokens and np.array_equal(a.ids, b.ids) and np.array_equal(a.offsets, b.offsets)
            and np.array_equal(a.counts, b.counts))


def test_tokenize_texts_consistent_with_tokenizer(tok, reviews):
    texts = reviews[:10] + ['', 'Short one!']
    tc = tokenize_texts(texts, tok, progress=False)
    check_corpus(tc, tok, texts)
    assert tc.tokens[0] == BOS and tc.doc_tokens(-2) == [BOS]
    assert 'documents' in repr(tc)


def test_chunk_boundaries_do_not_matter(tok, reviews):
    texts = reviews[:10]
    whole = tokenize_texts(texts, tok, chunk_size=1000, progress=False)
    for cs in (1, 3, 7):
        assert same(tokenize_texts(texts, tok, chunk_size=cs, progress=False), whole)


def test_inputs_series_generator_and_empty(tok, reviews):
    texts = reviews[:5]
    ref = tokenize_texts(texts, tok, progress=False)
    assert same(tokenize_texts(pd.Series(texts, index=[10, 11, 12, 13, 14]), tok, progress=False), ref)
    assert same(tokenize_texts((t for t in texts), tok, chunk_size=2, progress=False), ref)
    empty = tokenize_texts([], tok, progress=False)
    assert len(empty) == 0 and empty.n_tokens == 0 and empty.offsets.tolist() == [0] and empty.tokens == []


def test_default_tokenizer_and_base_tokenizer_argument():
    assert tokenize_texts(['Hi there'], progress=False).doc_tokens(0) == [BOS, MAJ, 'hi', 'there']
    assert tokenize_texts(['Hi there'], SpacyTokenizer(), progress=False).doc_tokens(0) == [BOS, MAJ, 'hi', 'there']


@pytest.mark.parametrize('bad, err', [(None, ValueError), (float('nan'), ValueError), (7, TypeError)])
def test_tokenize_texts_bad_input_names_index(tok, bad, err):
    texts = ['a'] * 5 + [bad] + ['b']
    with pytest.raises(err, match='document 5'):
        tokenize_texts(texts, tok, chunk_size=2, progress=False)
    with pytest.raises(err, match='document 5'):
        tokenize_texts(pd.Series(texts, dtype=object), tok, chunk_size=2, n_workers=2, progress=False)


def test_progress_bar_counts_documents(tok, capsys):
    tokenize_texts(['a b', 'c'] * 3, tok, chunk_size=2, progress=True)
    assert '6/6' in capsys.readouterr().err


def test_workers_give_identical_results(tok, reviews):
    seq = tokenize_texts(reviews, tok, chunk_size=7, progress=False)
    par = tokenize_texts(reviews, tok, chunk_size=7, n_workers=2, progress=False)
    assert same(par, seq)
    small_corpus = tokenize_texts(reviews, tok, n_workers=2, progress=False)  # cut in chunks of 15 for the workers
    assert same(small_corpus, seq)
    assert same(tokenize_texts(iter(reviews), tok, n_workers=2, chunk_size=25, progress=False), seq)


def test_workers_with_spawn(tok, reviews, monkeypatch):
    "The design works with the 'spawn' start method (macOS, Windows): everything a worker needs is picklable."
    monkeypatch.setattr(tokenize_module, '_mp_context', lambda: multiprocessing.get_context('spawn'))
    texts = reviews[:12]
    assert same(tokenize_texts(texts, tok, chunk_size=4, n_workers=2, progress=False),
                tokenize_texts(texts, tok, chunk_size=4, progress=False))


class CountingTok:
    "A base tokenizer that counts its calls (in this process)."
    calls = 0

    def __call__(self, texts):
        CountingTok.calls += 1
        return [t.split() for t in texts]

    def settings(self):
        return {'name': 'counting-split'}


def test_cache_hit_reads_instead_of_tokenizing(tmp_path, reviews):
    texts = reviews[:10]
    t = Tokenizer(CountingTok())
    CountingTok.calls = 0
    first = tokenize_texts(texts, t, chunk_size=4, cache_dir=tmp_path, progress=False)
    assert CountingTok.calls == 3
    assert len(list(tmp_path.glob('*.npz'))) == len(list(tmp_path.glob('*.json'))) == 3
    assert not list(tmp_path.glob('*.tmp')), 'no temporary files left'
    CountingTok.calls = 0
    second = tokenize_texts(texts, Tokenizer(CountingTok()), chunk_size=4, cache_dir=tmp_path, progress=False)
    assert CountingTok.calls == 0 and same(first, second)
    # one text changed: only its chunk is tokenized again
    third = tokenize_texts(texts[:9] + ['changed'], t, chunk_size=4, cache_dir=tmp_path, progress=False)
    assert CountingTok.calls == 1 and third.doc_tokens(9) == [BOS, 'changed']
    # the cache is also used with workers: no entry is computed (hence rewritten) again
    more = reviews[:16]
    CountingTok.calls = 0
    fourth = tokenize_texts(more, t, chunk_size=4, cache_dir=tmp_path, progress=False)
    assert CountingTok.calls == 2, 'documents 0-7 were cached by the first run'
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    fifth = tokenize_texts(more, t, chunk_size=4, cache_dir=tmp_path, n_workers=2, progress=False)
    assert same(fifth, fourth) and {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == stamps
    with np.load(next(tmp_path.glob('*.npz')), allow_pickle=False) as f:
        assert f['ids'].dtype == np.int32 and f['lengths'].dtype == np.int64


def test_cache_key_changes_with_settings(tmp_path, reviews):
    texts = reviews[:4]
    tokenize_texts(texts, Tokenizer(), cache_dir=tmp_path, progress=False)
    tokenize_texts(texts, Tokenizer(post_rules=[replace_all_caps]), cache_dir=tmp_path, progress=False)
    tokenize_texts(texts, Tokenizer(add_bos=False), cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob('*.npz'))) == 3
    no_bos = tokenize_texts(texts, Tokenizer(add_bos=False), cache_dir=tmp_path, progress=False)
    assert BOS not in no_bos.tokens


def test_corrupt_cache_file_is_a_miss(tmp_path, tok):
    texts = ['Hello there', 'General Kenobi']
    ref = tokenize_texts(texts, tok, cache_dir=tmp_path, progress=False)
    for f in tmp_path.glob('*.json'): f.write_text('{"tokens": ["only one"]}')
    assert same(tokenize_texts(texts, tok, cache_dir=tmp_path, progress=False), ref)
    for f in tmp_path.glob('*.npz'): f.write_bytes(b'garbage')
    assert same(tokenize_texts(texts, tok, cache_dir=tmp_path, progress=False), ref)


class CrashOn:
    "A base tokenizer whose worker process dies (or raises) on a document containing `word`."
    def __init__(self, word='CRASH', exit=True):
        self.word, self.exit = word, exit

    def __call__(self, texts):
        if any(self.word in t for t in texts):
            if self.exit: os._exit(1)
            raise ValueError(f'cannot tokenize {self.word}')
        return [t.split() for t in texts]

    def settings(self):
        return {'name': 'crash-on', 'word': self.word}


def test_dead_worker_is_an_error_naming_the_documents():
    texts = [f'doc {i}' for i in range(30)]
    texts[17] = 'this one will CRASH'
    with pytest.raises(RuntimeError, match=r'worker process died .*n_workers=0') as e:
        tokenize_texts(texts, Tokenizer(CrashOn()), chunk_size=3, n_workers=2, progress=False)
    lo, hi = map(int, re.search(r'documents (\d+)-(\d+)', str(e.value)).groups())
    assert lo <= 17 <= hi and hi < 30


def test_worker_exception_is_an_error_naming_the_documents():
    texts = [f'doc {i}' for i in range(30)]
    texts[17] = 'BOOM'
    with pytest.raises(RuntimeError, match=r'documents 15-17 failed .*ValueError: cannot tokenize BOOM.*n_workers=0'):
        tokenize_texts(texts, Tokenizer(CrashOn('BOOM', exit=False)), chunk_size=3, n_workers=2, progress=False)
    with pytest.raises(ValueError, match='cannot tokenize') as e:  # in this process, the error itself
        tokenize_texts(texts, Tokenizer(CrashOn('BOOM', exit=False)), chunk_size=3, progress=False)
    assert 'documents 15-17' in ' '.join(getattr(e.value, '__notes__', []))


# ---------------------------------------------------------------- SentencePiece

@pytest.fixture(scope='module')
def spm_tok(tmp_path_factory):
    trec = pd.read_csv(DATA / 'trec' / 'train.csv', keep_default_na=False)['text'].tolist()[:500]
    d = tmp_path_factory.mktemp('spm')
    t = Tokenizer(SentencePieceTokenizer(vocab_sz=300)).train(trec, cache_dir=d)
    assert (d / 'spm.model').exists()
    return t


def test_sentencepiece_before_training_is_a_clear_error():
    with pytest.raises(RuntimeError, match=r'call \.train\(texts, cache_dir\) first'):
        SentencePieceTokenizer()(['hello'])
    with pytest.raises(RuntimeError, match='no model yet'):
        tokenize_texts(['hello'], Tokenizer(SentencePieceTokenizer()), progress=False)


def test_sentencepiece_pieces_and_special_tokens(spm_tok):
    sp = spm_tok.tok
    assert len(sp._processor()) <= 300
    assert [sp._processor().id_to_piece(i) for i in range(len(SPECIAL_TOKENS))] == SPECIAL_TOKENS
    pieces = spm_tok(['What is the CAPITAL of Australia ?', 'How far is it from Denver to Aspen ?'])
    for p in pieces: assert p[0] == BOS
    flat = [t for p in pieces for t in p]
    assert UP in flat and MAJ in flat, 'markers are whole pieces'
    assert all(sp([f'a {s} b'])[0].count(s) == 1 for s in SPECIAL_TOKENS), 'special tokens are never split'
    assert spm_tok.decode(pieces[0]) == 'What is the CAPITAL of Australia?'
    assert spm_tok.decode(pieces[1]) == 'How far is it from Denver to Aspen?'


def test_sentencepiece_round_trip_and_pickle(spm_tok):
    sp = spm_tok.tok
    text = 'what is the name of the longest river in the world ?'
    pieces = sp([text])[0]
    assert ''.join(pieces).replace('▁', ' ').strip() == text
    clone = pickle.loads(pickle.dumps(sp))
    assert clone._sp is None and clone([text]) == [pieces] and clone.settings() == sp.settings()
    assert len(sp.settings()['model_sha256']) == 64


def test_sentencepiece_corpus_and_loading(spm_tok, tmp_path):
    texts = ['Who invented the telephone ?', 'What is the GDP of France ?']
    tc = tokenize_texts(texts, spm_tok, chunk_size=1, n_workers=2, progress=False)
    check_corpus(tc, spm_tok, texts)
    model = tmp_path / 'spm.model'
    model.write_bytes(spm_tok.tok.model)
    loaded = Tokenizer(SentencePieceTokenizer(sp_model=model))
    assert loaded(texts) == spm_tok(texts) and loaded.settings() == spm_tok.settings()


def test_sentencepiece_default_vocab_size(tmp_path):
    texts = [f'word{i} and word{i + 1} with other{i % 7}' for i in range(400)]
    sp = SentencePieceTokenizer(cache_dir=tmp_path).train(texts)
    assert (tmp_path / 'spm.model').exists()
    assert 16 < len(sp._processor()) <= 30000


def test_sentencepiece_too_small_vocab_is_a_clear_error():
    trec = pd.read_csv(DATA / 'trec' / 'train.csv', keep_default_na=False)['text'].tolist()[:100]
    with pytest.raises(RuntimeError, match='vocab_sz=20 must be larger than the number of characters'):
        SentencePieceTokenizer(vocab_sz=20).train(trec)
    with pytest.raises(ValueError, match='no non-empty text'):
        SentencePieceTokenizer(vocab_sz=100).train(['', '  '])
    with pytest.raises(ValueError, match='document 1 is missing'):
        Tokenizer(SentencePieceTokenizer(vocab_sz=100)).train(['ok', None])
