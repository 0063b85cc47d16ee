"""Using a trained model: predict (single, batched, in input order, thread-safe, leaving the learner as it was),
text generation with a seed, export and load_learner round trips, damaged or foreign model folders, bundles
(shards, tied weights, atomic writes) and pretrained language models mapped onto a new vocabulary."""
import json
import threading
from pathlib import Path

import pandas as pd
import pytest
import torch

from ulmfit_learner import (AWD_LSTM, LMLearner, SentencePieceTokenizer, TextDataLoaders, TextLearner, Tokenizer,
                            load_learner, match_embeddings, pretrained_tokenizer, read_bundle, set_seed,
                            shard_tensors, write_bundle)
from ulmfit_learner.bundle import MAX_SHARD_BYTES, tokenizer_from_json, tokenizer_to_json
from ulmfit_learner.callbacks import ProgressCallback
from ulmfit_learner.text.tokenize import DEFAULT_PRE_RULES
from ulmfit_learner.ulmfit import language_model_learner, text_classifier_learner

from conftest import DATA

SMALL = dict(emb_sz=16, n_hid=32, n_layers=2)
pytestmark = pytest.mark.usefixtures('one_thread')
QUESTIONS = ['How far is it from Denver to Aspen ?', 'Who wrote Hamlet ?', 'What is the capital of Peru ?',
             'What does NASA stand for ?', 'Why is the sky blue ?']


def quiet(learn):
    learn.remove_cb(ProgressCallback)
    return learn


@pytest.fixture(scope='module')
def trec():
    return pd.read_csv(DATA / 'trec' / 'train.csv', keep_default_na=False).iloc[::10].reset_index(drop=True)


@pytest.fixture(scope='module')
def lm(trec, tmp_path_factory, one_thread_module):
    set_seed(0)
    dls = TextDataLoaders.from_df(trec, text_col='text', is_lm=True, valid_pct=0.1, seed=0, bs=8, seq_len=12,
                                  progress=False)
    learn = quiet(language_model_learner(dls, AWD_LSTM, config=SMALL, path=tmp_path_factory.mktemp('lm'), device='cpu'))
    learn.fit_stlr(1, 1e-2)
    return learn


@pytest.fixture(scope='module')
def clas(trec, lm, tmp_path_factory, one_thread_module):
    set_seed(0)
    dls = TextDataLoaders.from_df(trec, text_col='text', label_col='label', text_vocab=lm.dls.vocab, seed=0, bs=16,
                                  progress=False)
    learn = quiet(text_classifier_learner(dls, AWD_LSTM, seq_len=12, config=SMALL, path=tmp_path_factory.mktemp('c'),
                                          device='cpu'))
    learn.fit_stlr(1, 1e-2)
    return learn


@pytest.fixture
def exported(clas, tmp_path):
    return clas.export(tmp_path / 'model')


# ---- predict ------------------------------------------------------------------------------------------------------
def test_predict_one_text(clas):
    label, idx, probs = clas.predict(QUESTIONS[0])
    assert clas.classes == ['ABBR', 'DESC', 'ENTY', 'HUM', 'LOC', 'NUM'] and label == clas.classes[idx]
    assert probs.shape == (6,) and probs.sum().item() == pytest.approx(1, abs=1e-5) and idx == int(probs.argmax())


def test_predict_batch_is_in_input_order_and_equals_one_by_one(clas):
    batch = clas.predict(QUESTIONS)
    singles = [clas.predict(q) for q in QUESTIONS]
    assert [b[0] for b in batch] == [s[0] for s in singles]
    for b, s in zip(batch, singles): assert torch.allclose(b[2], s[2], atol=1e-6)
    rev = clas.predict(QUESTIONS[::-1])
    for b, r in zip(batch, rev[::-1]): assert torch.allclose(b[2], r[2], atol=1e-6)
    assert clas.predict([]) == []


def test_predict_matches_get_preds_on_test_dl(clas):
    probs, = clas.get_preds(dl=clas.dls.test_dl(QUESTIONS), with_targs=False)
    assert torch.allclose(torch.stack([p for _, _, p in clas.predict(QUESTIONS)]), probs, atol=1e-6)


def test_predict_leaves_the_learner_as_it_was(clas):
    clas.model.train()
    before = {k: v.clone() for k, v in clas.model.state_dict().items()}
    rng, xb = torch.get_rng_state(), clas.xb
    clas.predict(QUESTIONS)
    assert clas.model.training and clas.xb is xb and torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(before[k], v) for k, v in clas.model.state_dict().items())
    clas.model.eval()


def test_predict_from_several_threads(clas):
    expected = [p for _, _, p in clas.predict(QUESTIONS)]
    results, errors = {}, []
    def work(i):
        try: results[i] = [p for _, _, p in clas.predict(QUESTIONS[i % 5:] + QUESTIONS[:i % 5])]
        except Exception as e: errors.append(e)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    assert not errors
    for i, ps in results.items():
        order = list(range(i % 5, 5)) + list(range(i % 5))
        for p, j in zip(ps, order): assert torch.allclose(p, expected[j], atol=1e-6)


def test_predict_bad_input(clas):
    with pytest.raises(ValueError, match='empty.*a model needs a text'): clas.predict(['fine', '  '])
    with pytest.raises(ValueError, match='missing'): clas.predict([None])
    with pytest.raises(TypeError, match='not a string'): clas.predict([3])


# ---- generation ---------------------------------------------------------------------------------------------------
def test_generation_is_reproducible_with_a_seed_and_leaves_rng_alone(lm):
    rng = torch.get_rng_state()
    a = lm.predict('What is the', n_words=10, seed=3)
    assert a == lm.predict('What is the', n_words=10, seed=3) and a.startswith('What is the')
    assert torch.equal(rng, torch.get_rng_state())
    assert lm.predict('What is the', n_words=10, temperature=0) == lm.predict('What is the', n_words=10, temperature=0)
    assert 'xxunk' not in lm.predict('What is the', n_words=30, seed=0)


def test_generation_runs_the_model_once_per_token_and_restores_its_state(lm):
    calls = []
    handle = lm.model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    marker = [(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1))]
    lm.model.encoder.hidden = marker
    lm.model.train()
    try: lm.predict('Who is', n_words=6, temperature=0)
    finally: handle.remove()
    n_prompt = len(lm.dls.numericalize(['Who is'])[0])
    assert calls == [(1, n_prompt)] + [(1, 1)] * 5, 'the prompt once, then one call per new token'
    assert lm.model.encoder.hidden is marker and lm.model.training
    lm.model.encoder.hidden = None
    with pytest.raises(TypeError, match='one text'): lm.predict(['a', 'b'])
    with pytest.raises(ValueError, match='temperature'): lm.predict('a', temperature=-1)


# ---- export and load_learner -------------------------------------------------------------------------------------
def test_export_writes_plain_files(exported):
    names = sorted(p.name for p in exported.iterdir())
    assert names == ['bundle.json', 'labels.json', 'manifest.json', 'tokenizer.json', 'vocab.json',
                     'weights-00001-of-00001.safetensors']
    meta = json.loads((exported / 'bundle.json').read_text())
    assert meta['kind'] == 'classifier' and meta['learner']['seq_len'] == 12 and meta['learner']['lin_ftrs'] == [50]
    assert json.loads((exported / 'labels.json').read_text())['classes'][0] == 'ABBR'


def test_round_trip_predictions_are_equal(clas, exported):
    loaded = load_learner(exported, device='cpu')
    assert type(loaded) is TextLearner and loaded.classes == clas.classes and loaded.dls.vocab == clas.dls.vocab
    for (l1, i1, p1), (l2, i2, p2) in zip(clas.predict(QUESTIONS), loaded.predict(QUESTIONS)):
        assert l1 == l2 and i1 == i2 and torch.allclose(p1, p2, atol=1e-6)
    for k, v in clas.model.state_dict().items(): assert torch.equal(v, loaded.model.state_dict()[k]), k


def test_loaded_learner_refuses_to_train_without_data(exported):
    loaded = load_learner(exported, device='cpu')
    with pytest.raises(ValueError, match='no training data.*learn.dls = '): loaded.fit(1)


def test_language_model_round_trip(lm, tmp_path):
    folder = lm.export(tmp_path / 'lm')
    loaded = load_learner(folder)
    assert isinstance(loaded, LMLearner) and loaded.model.decoder.weight is loaded.model.encoder.emb.weight
    assert loaded.predict('What is the', n_words=8, seed=2) == lm.predict('What is the', n_words=8, seed=2)


def test_missing_file_is_named(exported):
    (exported / 'vocab.json').unlink()
    with pytest.raises(FileNotFoundError, match='vocab.json is missing'): load_learner(exported)


def test_altered_file_is_named(exported):
    shard = exported / 'weights-00001-of-00001.safetensors'
    data = bytearray(shard.read_bytes()); data[-3] ^= 0xFF; shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r'weights-00001-of-00001.safetensors does not match the manifest'):
        load_learner(exported)


def test_altered_json_is_caught_too(exported):
    labels = exported / 'labels.json'
    labels.write_text(labels.read_text().replace('ABBR', 'ABBX'))
    with pytest.raises(ValueError, match='labels.json does not match the manifest'): load_learner(exported)


def test_a_manifest_listing_paths_outside_the_folder_is_refused(exported, tmp_path):
    "A local bundle's manifest is checked as a downloaded one is: no file outside the folder is ever read or hashed."
    (tmp_path / 'secret.txt').write_text('not the bundle\'s')
    manifest = json.loads((exported / 'manifest.json').read_text())
    for name, entry in [('../secret.txt', {'sha256': '0' * 64, 'bytes': 15}), ('labels.json', {'bytes': 3})]:
        bad = dict(manifest, files={**manifest['files'], name: entry})
        (exported / 'manifest.json').write_text(json.dumps(bad))
        match = 'not a plain file name' if name.startswith('..') else "no sha256 and size for 'labels.json'"
        with pytest.raises(ValueError, match=match): load_learner(exported)


def test_newer_format_is_refused(exported):
    meta = json.loads((exported / 'bundle.json').read_text())
    meta['version'] = 99
    data = json.dumps(meta).encode()
    (exported / 'bundle.json').write_bytes(data)
    manifest = json.loads((exported / 'manifest.json').read_text())
    import hashlib
    manifest['files']['bundle.json'] = {'sha256': hashlib.sha256(data).hexdigest(), 'bytes': len(data)}
    (exported / 'manifest.json').write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match='bundle format 99.*upgrade ulmfit_learner'): load_learner(exported)


def test_not_a_model_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match='no model folder'): load_learner(tmp_path / 'nothing')
    (tmp_path / 'x').mkdir(); (tmp_path / 'x' / 'a.txt').write_text('hi')
    with pytest.raises(ValueError, match='not a model bundle'): load_learner(tmp_path / 'x')
    with pytest.raises(FileExistsError, match='not a bundle'): write_bundle(tmp_path / 'x', 'demo', {})


def test_weights_never_unpickled(exported):
    "The folder holds no pickle: every file is JSON or safetensors (a JSON header, then raw bytes)."
    for f in exported.iterdir():
        head = f.read_bytes()[:16]
        if f.suffix == '.json': json.loads(f.read_text())
        else: assert f.suffix == '.safetensors' and head[8:9] == b'{', f


def test_export_with_sentencepiece_and_backwards(trec, tmp_path):
    tok = Tokenizer(SentencePieceTokenizer(vocab_sz=200))
    dls = TextDataLoaders.from_df(trec, text_col='text', label_col='label', seed=0, bs=16, tok=tok, backwards=True,
                                  progress=False)
    learn = quiet(text_classifier_learner(dls, AWD_LSTM, seq_len=12, config=SMALL, path=tmp_path, device='cpu'))
    folder = learn.export(tmp_path / 'sp')
    assert (folder / 'spm.model').is_file()
    loaded = load_learner(folder)
    assert loaded.dls.text_block.backwards
    for (_, _, p1), (_, _, p2) in zip(learn.predict(QUESTIONS), loaded.predict(QUESTIONS)):
        assert torch.allclose(p1, p2, atol=1e-6)


def shout(t): return t.upper()


def test_custom_rules_must_be_handed_over(trec, tmp_path):
    dls = TextDataLoaders.from_df(trec, text_col='text', label_col='label', seed=0, bs=16, progress=False,
                                  tok=Tokenizer(pre_rules=[shout, *DEFAULT_PRE_RULES]))
    learn = quiet(text_classifier_learner(dls, AWD_LSTM, seq_len=12, config=SMALL, path=tmp_path, device='cpu'))
    folder = learn.export(tmp_path / 'custom')
    with pytest.raises(ValueError, match=r"not the library's: \['test_export.shout'\].*rules="): load_learner(folder)
    loaded = load_learner(folder, rules={'test_export.shout': shout})
    assert torch.allclose(loaded.predict(QUESTIONS[0])[2], learn.predict(QUESTIONS[0])[2], atol=1e-6)


def test_multi_label_round_trip(trec, tmp_path):
    df = trec.assign(tags=trec.label + ';' + trec.label_fine.str.split(':').str[1].str[:1])
    dls = TextDataLoaders.from_df(df, text_col='text', label_col='tags', label_delim=';', seed=0, bs=16, progress=False)
    learn = quiet(text_classifier_learner(dls, AWD_LSTM, seq_len=12, config=SMALL, path=tmp_path, device='cpu'))
    labels, on, probs = learn.predict(QUESTIONS[0])
    assert isinstance(labels, list) and on.dtype == torch.bool and ((probs > 0) & (probs < 1)).all()
    loaded = load_learner(learn.export(tmp_path / 'multi'))
    assert torch.allclose(loaded.predict(QUESTIONS[0])[2], probs, atol=1e-6) and loaded.classes == learn.classes


# ---- bundles ------------------------------------------------------------------------------------------------------
def test_large_tensors_are_cut_into_shards_of_at_most_16mb(tmp_path):
    state = {'emb': torch.randn(12_000, 400), 'small': torch.randn(3)}  # 19.2 MB
    state['tied'] = state['emb']
    folder = write_bundle(tmp_path / 'big', 'demo', state)
    shards = sorted(folder.glob('*.safetensors'))
    assert len(shards) == 2 and all(s.stat().st_size <= MAX_SHARD_BYTES + 4096 for s in shards)
    back = read_bundle(folder).state
    assert torch.equal(back['emb'], state['emb']) and back['tied'] is back['emb'] and torch.equal(back['small'], state['small'])


def test_shard_plan_keeps_every_piece_under_the_limit():
    state = {f't{i}': torch.randn(i + 1, 7) for i in range(20)}
    shards, index, tied = shard_tensors(state, max_bytes=7 * 4 * 5)
    assert not tied and all(sum(t.numel() * 4 for t in s.values()) <= 140 for s in shards)
    pieces = {k: v for s in shards for k, v in s.items()}
    for name, t in state.items(): assert torch.equal(torch.cat([pieces[p] for p in index[name]['pieces']]), t)


def test_failed_write_leaves_the_old_bundle(tmp_path, monkeypatch):
    folder = write_bundle(tmp_path / 'b', 'demo', {'x': torch.ones(2)})
    import ulmfit_learner.bundle as bundle_mod
    def boom(*a, **k): raise OSError('disk full')
    monkeypatch.setattr(bundle_mod, 'sha256_file', boom)
    with pytest.raises(OSError, match='disk full'): write_bundle(folder, 'demo', {'x': torch.zeros(2)})
    monkeypatch.undo()
    assert torch.equal(read_bundle(folder).state['x'], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['b'], 'no temporary folder left behind'


def test_reading_only_the_json_files_does_not_hash_the_weights(tmp_path, monkeypatch):
    folder = write_bundle(tmp_path / 'b', 'demo', {'x': torch.ones(2)}, files={'vocab.json': ['a']})
    import ulmfit_learner.bundle as bundle_mod
    hashed, real = [], bundle_mod.sha256_file
    monkeypatch.setattr(bundle_mod, 'sha256_file', lambda f: hashed.append(Path(f).name) or real(f))
    assert read_bundle(folder, weights=False).state == {} and not any(n.endswith('.safetensors') for n in hashed)
    assert 'vocab.json' in hashed, 'the JSON files are still checked'
    read_bundle(folder)
    assert any(n.endswith('.safetensors') for n in hashed), 'reading the weights checks them'


def test_tokenizer_json_round_trip():
    tok = Tokenizer()
    settings, files = tokenizer_to_json(tok)
    assert not files and settings['tok'] == {'name': 'spacy', 'lang': 'en'}
    again = tokenizer_from_json(json.loads(json.dumps(settings)))
    assert again.settings() == tok.settings()


# ---- pretrained language models ------------------------------------------------------------------------------------
def test_match_embeddings_copies_known_rows_and_averages_new_ones():
    emb = torch.arange(12.).reshape(4, 3)
    state = {'encoder.emb_dp.emb.weight': emb, 'decoder.weight': emb, 'decoder.bias': torch.tensor([1., 2., 3., 4.])}
    new, n = match_embeddings(state, ['a', 'b', 'c', 'd'], ['c', 'z', 'a', 'xxfake'])
    w = new['encoder.emb_dp.emb.weight']
    assert n == 2 and torch.equal(w[0], emb[2]) and torch.equal(w[2], emb[0]) and torch.equal(w[1], emb.mean(0))
    assert new['decoder.weight'] is w and new['decoder.bias'].tolist() == [3., 2.5, 1., 2.5]


def test_pretrained_bundle_feeds_a_new_language_model(lm, trec, tmp_path, capsys):
    folder = lm.export(tmp_path / 'pre')
    other = TextDataLoaders.from_df(trec.iloc[::2], text_col='text', is_lm=True, valid_pct=0.1, seed=1, bs=8, seq_len=12,
                                    min_freq=1, progress=False)
    ft = language_model_learner(other, AWD_LSTM, pretrained=folder, config=dict(hidden_p=0.2), path=tmp_path)
    assert 'tokens of this vocabulary' in capsys.readouterr().out
    assert ft.model.encoder.config.n_hid == SMALL['n_hid'] and ft.model.encoder.config.hidden_p == pytest.approx(0.2)
    v_old, v_new = lm.dls.vocab, ft.dls.vocab
    shared = [t for t in v_new.itos if t in v_old.stoi and t != 'xxfake']
    n_real = sum(t != 'xxfake' for t in v_new.itos)
    assert ft.pretrained_coverage == pytest.approx(len(shared) / n_real)
    for t in shared[:50]:
        assert torch.equal(ft.model.encoder.emb.weight[v_new.stoi[t]], lm.model.encoder.emb.weight[v_old.stoi[t]])
    assert ft.model.decoder.weight is ft.model.encoder.emb.weight


def test_pretrained_refusals(lm, trec, tmp_path, monkeypatch):
    folder = lm.export(tmp_path / 'pre')
    bwd = TextDataLoaders.from_df(trec, text_col='text', is_lm=True, seed=0, bs=8, seq_len=12, backwards=True,
                                  progress=False)
    with pytest.raises(ValueError, match='reads text forward.*backwards=False'):
        language_model_learner(bwd, AWD_LSTM, pretrained=folder)
    sp = TextDataLoaders.from_df(trec, text_col='text', is_lm=True, seed=0, bs=8, seq_len=12, progress=False,
                                 tok=Tokenizer(SentencePieceTokenizer(vocab_sz=200)))
    with pytest.raises(ValueError, match='another tokenizer.*pretrained_tokenizer'):
        language_model_learner(sp, AWD_LSTM, pretrained=folder)
    assert pretrained_tokenizer(folder).settings() == lm.dls.tokenizer.settings()
    monkeypatch.setenv('ULMFIT_HOME', str(tmp_path / 'home'))
    with pytest.raises(FileNotFoundError, match=r'pretrained=True looks for a forward.*ulmfit pretrain'):
        language_model_learner(lm.dls, AWD_LSTM, pretrained=True)
    lm.export(tmp_path / 'home' / 'pretrained' / 'fwd')
    assert language_model_learner(lm.dls, AWD_LSTM, pretrained=True).pretrained_coverage == 1.0
