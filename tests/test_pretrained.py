"""Pretrained bundles: names in the `$ULMFIT_HOME` cache, downloads from a local HTTP server (checked file by file,
pinned, atomic, cached; damaged, cut short, missing and stalled files), and fastai's AWD_LSTM weights imported
without running pickled code."""
import functools
import io
import json
import os
import pickle
import shutil
import sys
import threading
import time
from dataclasses import asdict
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path

import pandas as pd
import pytest
import torch

from ulmfit_learner import (AWD_LSTM, SPECIAL_TOKENS, TextDataLoaders, download_bundle, import_fastai_weights,
                            language_model_learner, list_pretrained, make_config, pretrained_path, pretrained_vocab, read_bundle,
                            read_itos, set_seed, text_classifier_learner, verify_bundle)
from ulmfit_learner.bundle import MANIFEST, sha256_file
from ulmfit_learner.callbacks import ProgressCallback

pytestmark = pytest.mark.usefixtures('one_thread')
TINY = dict(emb_sz=8, n_hid=16, n_layers=2)


# ---- fixtures: a tiny language model, its bundle, a local web server ----------------------------------------------
@pytest.fixture(scope='module')
def dls():
    with files('ulmfit_learner').joinpath('data', 'trec6.csv').open('r', encoding='utf-8') as f:
        trec = pd.read_csv(f, keep_default_na=False).iloc[::20].reset_index(drop=True)
    return TextDataLoaders.from_df(trec, text_col='text', is_lm=True, valid_pct=0.1, seed=0, bs=8, seq_len=12,
                                   progress=False)


@pytest.fixture(scope='module')
def lm(dls, tmp_path_factory):
    set_seed(0)
    learn = language_model_learner(dls, AWD_LSTM, config=TINY, path=tmp_path_factory.mktemp('lm'), device='cpu')
    learn.remove_cb(ProgressCallback)
    return learn


@pytest.fixture(scope='module')
def bundle(lm, tmp_path_factory):
    return lm.export(tmp_path_factory.mktemp('exported') / 'lm')


@pytest.fixture
def site(bundle, tmp_path):
    "A web site's folder holding a copy of the bundle at `models/tiny-lm/` (tests may damage it)."
    shutil.copytree(bundle, tmp_path / 'site' / 'models' / 'tiny-lm')
    return tmp_path / 'site'


@pytest.fixture
def served(site):
    "The bundle's folder on the site."
    return site / 'models' / 'tiny-lm'


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    "An empty `$ULMFIT_HOME` for every test; returns its `pretrained` folder."
    monkeypatch.setenv('ULMFIT_HOME', str(tmp_path / 'home'))
    return tmp_path / 'home' / 'pretrained'


def cache_entries(cache) -> list[str]:
    "Everything in the cache folder, hidden temporary folders included."
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


@pytest.fixture
def serve():
    "`serve(folder, handler)` serves `folder` on 127.0.0.1 (a free port): (URL, requested paths); shut down after."
    running = []
    def start(folder, handler=SimpleHTTPRequestHandler):
        requests = []
        class Counting(handler):
            def log_message(self, *args): pass
            def do_GET(self):
                requests.append(self.path)
                super().do_GET()
        server = ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Counting, directory=str(folder)))
        thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
        thread.start()
        running.append((server, thread))
        return f'http://127.0.0.1:{server.server_port}', requests
    yield start
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join(5)


class CutShort(SimpleHTTPRequestHandler):
    "Announces the whole weights file, sends half of it, and closes the connection."
    def do_GET(self):
        if not self.path.endswith('.safetensors'): return super().do_GET()
        data = Path(self.translate_path(self.path)).read_bytes()
        self.send_response(200)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data[:len(data) // 2])
        self.wfile.flush()
        self.close_connection = True


class Stalls(SimpleHTTPRequestHandler):
    "Sends the headers of vocab.json, then nothing for a second."
    def do_GET(self):
        if not self.path.endswith('vocab.json'): return super().do_GET()
        self.send_response(200)
        self.send_header('Content-Length', '100')
        self.end_headers()
        self.wfile.flush()
        time.sleep(1.0)


# ---- names and the cache ------------------------------------------------------------------------------------------
def test_names_and_the_cache_listing(bundle, cache, tmp_path, monkeypatch):
    assert list_pretrained() == []
    with pytest.raises(FileNotFoundError, match=r"pretrained='wt103-fwd'.*pretrained/wt103-fwd.*is empty.*"
                                                r"ulmfit pretrain.*import_fastai_weights.*https://"):
        pretrained_path('wt103-fwd')
    shutil.copytree(bundle, cache / 'wt103-fwd')
    (cache / '.tmp-wt103-bwd-x').mkdir()  # a download in progress is not a bundle
    (cache / 'notes').mkdir()             # nor is a folder without a manifest
    assert list_pretrained() == ['wt103-fwd']
    assert pretrained_path('wt103-fwd') == cache / 'wt103-fwd'
    with pytest.raises(FileNotFoundError, match=r"pretrained='wt103-bwd'.*holds 'wt103-fwd'"):
        pretrained_path('wt103-bwd')
    with pytest.raises(FileNotFoundError, match=r"pretrained=True looks for a backward.*holds 'wt103-fwd'.*--backw"):
        pretrained_path(True, backwards=True)
    shutil.copytree(bundle, cache / 'fwd')
    assert pretrained_path(True) == cache / 'fwd' and list_pretrained() == ['fwd', 'wt103-fwd']
    # an existing folder wins over a name; paths (with '/', or Path objects) are never names
    monkeypatch.chdir(tmp_path)
    shutil.copytree(bundle, tmp_path / 'wt103-fwd')
    assert pretrained_path('wt103-fwd') == Path('wt103-fwd')
    assert pretrained_path('no/such/folder') == Path('no/such/folder') and pretrained_path(Path('x')) == Path('x')


def test_a_pin_checks_local_bundles_too(bundle, cache):
    shutil.copytree(bundle, cache / 'mine')
    pin = sha256_file(bundle / MANIFEST)
    assert pretrained_path('mine', sha256=pin) == cache / 'mine'
    assert pretrained_path(bundle, sha256=pin.upper()) == bundle
    with pytest.raises(ValueError, match=f'expected {"1" * 64}, got {pin}'):
        pretrained_path('mine', sha256='1' * 64)
    with pytest.raises(ValueError, match='64 hex digits'):
        download_bundle('http://127.0.0.1:9/b/', sha256='abc')


# ---- downloads ----------------------------------------------------------------------------------------------------
def test_download_checks_every_file_and_the_second_call_uses_the_cache(served, site, serve, cache, capsys):
    url, requests = serve(site)
    path = pretrained_path(f'{url}/models/tiny-lm/')
    assert path.parent == cache and path.name.startswith('tiny-lm-') and list_pretrained() == [path.name]
    listed = json.loads((served / MANIFEST).read_text())['files']
    assert requests[0] == '/models/tiny-lm/manifest.json'
    assert sorted(requests[1:]) == sorted(f'/models/tiny-lm/{n}' for n in listed)
    for name in [*listed, MANIFEST]: assert (path / name).read_bytes() == (served / name).read_bytes()
    verify_bundle(path)
    out = capsys.readouterr().out  # not a terminal: plain lines
    assert f'downloading {url}/models/tiny-lm/' in out and all(n in out for n in listed) and 'done in' in out
    n = len(requests)
    # the same bundle, spelled three ways, comes from the cache without a request
    for spelling in ['/models/tiny-lm/', '/models/tiny-lm', '/models/tiny-lm/manifest.json']:
        assert download_bundle(url + spelling, progress=False) == path
    assert len(requests) == n and capsys.readouterr().out == '' and cache_entries(cache) == [path.name]


def test_progress_is_a_bar_on_a_terminal_and_nothing_when_off(served, site, serve, cache, monkeypatch, capsys):
    class Terminal(io.StringIO):
        def isatty(self): return True
    terminal = Terminal()
    monkeypatch.setattr(sys, 'stderr', terminal)
    url, _ = serve(site)
    path = download_bundle(f'{url}/models/tiny-lm/')
    assert f'downloading {url}/models/tiny-lm/' in terminal.getvalue() and '/s]' in terminal.getvalue()  # tqdm's rate
    shutil.rmtree(path)
    terminal.seek(0); terminal.truncate()
    download_bundle(f'{url}/models/tiny-lm/', progress=False)
    assert terminal.getvalue() == '' and capsys.readouterr().out == ''


def test_a_damaged_cached_copy_is_downloaded_again(served, site, serve, cache):
    url, requests = serve(site)
    path = download_bundle(f'{url}/models/tiny-lm/', progress=False)
    (path / 'vocab.json').write_text('[]')
    n = len(requests)
    assert download_bundle(f'{url}/models/tiny-lm/', progress=False) == path and len(requests) > n
    verify_bundle(path)
    assert cache_entries(cache) == [path.name]  # the damaged copy is gone, no temporary folder is left


def test_the_manifest_pin(served, site, serve, cache):
    url, requests = serve(site)
    pin = sha256_file(served / MANIFEST)
    with pytest.raises(ValueError, match=f'does not match the pinned sha256: expected {"a" * 64}, got {pin}'):
        download_bundle(f'{url}/models/tiny-lm/', sha256='a' * 64, progress=False)
    assert requests == ['/models/tiny-lm/manifest.json'] and cache_entries(cache) == []
    path = download_bundle(f'{url}/models/tiny-lm/', sha256=pin, progress=False)
    n = len(requests)
    assert download_bundle(f'{url}/models/tiny-lm/', sha256=pin, progress=False) == path and len(requests) == n
    # a pin that the cached copy does not match asks the server again (a new release), and keeps the old copy if
    # the server does not match it either
    with pytest.raises(ValueError, match='pinned sha256'):
        download_bundle(f'{url}/models/tiny-lm/', sha256='b' * 64, progress=False)
    assert len(requests) == n + 1 and cache_entries(cache) == [path.name]
    verify_bundle(path)


def shard_of(folder: Path) -> Path: return next(folder.glob('*.safetensors'))


@pytest.mark.parametrize('damage', ['flip_a_byte', 'append'])
def test_a_file_altered_on_the_server(damage, served, site, serve, cache):
    url, _ = serve(site)
    shard = shard_of(served)
    data = bytearray(shard.read_bytes())
    if damage == 'flip_a_byte': data[-1] ^= 0xFF
    else: data += b'more'
    shard.write_bytes(bytes(data))
    match = 'does not match the manifest: expected sha256' if damage == 'flip_a_byte' else 'larger than the manifest'
    with pytest.raises(ValueError, match=f'{shard.name} .*{match}'):
        download_bundle(f'{url}/models/tiny-lm/', progress=False)
    assert cache_entries(cache) == []


def test_a_download_cut_short(served, site, serve, cache):
    url, _ = serve(site, CutShort)
    shard = shard_of(served)
    with pytest.raises(OSError, match=rf'{shard.name} from {url}/models/tiny-lm/{shard.name} was cut short: '
                                      rf'[\d,]+ of {shard.stat().st_size:,} bytes'):
        download_bundle(f'{url}/models/tiny-lm/', progress=False)
    assert cache_entries(cache) == []


def test_a_missing_file_and_a_missing_bundle(served, site, serve, cache):
    url, _ = serve(site)
    (served / 'vocab.json').unlink()
    with pytest.raises(OSError, match=f'could not download vocab.json from {url}/models/tiny-lm/vocab.json: HTTP 404'):
        download_bundle(f'{url}/models/tiny-lm/', progress=False)
    with pytest.raises(OSError, match=f'manifest.json from {url}/models/nothing-here/manifest.json: HTTP 404'):
        pretrained_path(f'{url}/models/nothing-here/')
    assert cache_entries(cache) == []


def test_a_stalled_server_times_out(served, site, serve, cache):
    url, _ = serve(site, Stalls)
    t0 = time.time()
    with pytest.raises(OSError, match=r'vocab.json from .* failed \((TimeoutError|timeout)'):
        download_bundle(f'{url}/models/tiny-lm/', progress=False, timeout=0.3)
    assert time.time() - t0 < 5 and cache_entries(cache) == []


def test_a_manifest_naming_paths_outside_the_bundle_is_refused(served, site, serve, cache, tmp_path):
    manifest = json.loads((served / MANIFEST).read_text())
    manifest['files']['../../escaped.txt'] = {'sha256': '0' * 64, 'bytes': 1}
    (served / MANIFEST).write_text(json.dumps(manifest))
    url, requests = serve(site)
    with pytest.raises(ValueError, match=r"lists '../../escaped.txt', which is not a plain file name"):
        download_bundle(f'{url}/models/tiny-lm/', progress=False)
    assert requests == ['/models/tiny-lm/manifest.json'] and cache_entries(cache) == []
    assert not list(tmp_path.rglob('escaped.txt'))


def test_language_model_learner_loads_a_bundle_by_url(lm, dls, bundle, serve, cache):
    url, _ = serve(bundle.parent)
    learn = language_model_learner(dls, AWD_LSTM, pretrained=f'{url}/{bundle.name}/', device='cpu')
    [name] = list_pretrained()
    assert learn.pretrained_coverage == 1.0 and name.startswith(f'{bundle.name}-')
    real = torch.tensor([t != 'xxfake' for t in dls.vocab.itos])  # filler rows start at the mean
    for k, v in lm.model.state_dict().items():
        got = learn.model.state_dict()[k]
        assert torch.equal(got[real], v[real]) if k in ('encoder.emb_dp.emb.weight', 'decoder.weight', 'decoder.bias') \
            else torch.equal(got, v), k


def test_a_task_vocab_extended_by_the_pretrained_one_keeps_every_pretrained_vector(lm, bundle, capsys):
    """Loaders built with `extra_vocab=pretrained_vocab(bundle)`: the task's tokens keep their ids, every pretrained
    token has a row, and each row (embedding and decoder bias) is the pretrained model's, task word or not."""
    with files('ulmfit_learner').joinpath('data', 'trec6.csv').open('r', encoding='utf-8') as f:
        other = pd.read_csv(f, keep_default_na=False).iloc[5::20].reset_index(drop=True)
    kw = dict(text_col='text', is_lm=True, valid_pct=0.1, seed=0, bs=8, seq_len=12, progress=False)
    plain = TextDataLoaders.from_df(other, **kw)
    pre = pretrained_vocab(bundle)
    assert pre == lm.dls.vocab
    ext = TextDataLoaders.from_df(other, **kw, extra_vocab=pre)
    assert ext.vocab == plain.vocab.extend(pre) and len(ext.vocab) > len(plain.vocab)
    capsys.readouterr()
    narrow = language_model_learner(plain, AWD_LSTM, pretrained=bundle, device='cpu')
    printed = capsys.readouterr().out
    assert "task's own" not in printed, 'nothing added, nothing to say apart'
    learn = language_model_learner(ext, AWD_LSTM, pretrained=bundle, device='cpu')
    assert learn.pretrained_coverage > narrow.pretrained_coverage
    # the coverage counts the added tokens; the task's own vocabulary's is printed apart, and is the narrow one's
    n_own = sum(t != 'xxfake' for t in plain.vocab.itos)
    n_found = round(narrow.pretrained_coverage * n_own)
    assert len(ext.extra_tokens) == sum(t != 'xxfake' for t in ext.vocab.itos) - n_own > 0
    assert (f"of the task's own {n_own:,} tokens, {n_found:,} ({n_found / n_own:.1%}); the other "
            f"{len(ext.extra_tokens):,} were added by extra_vocab") in capsys.readouterr().out
    old, new = read_bundle(bundle).state, learn.model.state_dict()
    for tok, i in pre.stoi.items():
        if tok == 'xxfake': continue
        j = ext.vocab.stoi[tok]
        for key in ('encoder.emb_dp.emb.weight', 'decoder.bias'): assert torch.equal(new[key][j], old[key][i]), (tok, key)
    with pytest.raises(FileNotFoundError): pretrained_vocab(bundle.parent / 'nothing-here')


def test_a_classifier_on_an_extended_vocab_loads_an_encoder_of_the_task_vocab(lm, bundle, tmp_path):
    """`load_encoder(name, pretrained=bundle)`: a classifier whose vocabulary extends the encoder's by the pretrained
    one keeps the encoder's rows for the encoder's tokens and takes the pretrained model's for the added ones; refused
    without `pretrained`, and when the vocabulary does not extend the encoder's, each with its fix."""
    with files('ulmfit_learner').joinpath('data', 'trec6.csv').open('r', encoding='utf-8') as f:
        other = pd.read_csv(f, keep_default_na=False).iloc[5::20].reset_index(drop=True)
    kw = dict(text_col='text', valid_pct=0.1, seed=0, bs=8, progress=False)
    task = TextDataLoaders.from_df(other, is_lm=True, seq_len=12, **kw)
    task_lm = language_model_learner(task, AWD_LSTM, pretrained=bundle, path=tmp_path, device='cpu')
    with torch.no_grad(): task_lm.model.encoder.emb.weight.add_(1.)  # fine-tuned rows differ from the pretrained ones
    task_lm.save_encoder('enc')
    pre = pretrained_vocab(bundle)
    ext = TextDataLoaders.from_df(other, label_col='label', text_vocab=task.vocab, extra_vocab=pre, **kw)
    assert ext.vocab == task.vocab.extend(pre) and len(ext.vocab) > len(task.vocab)
    clas = text_classifier_learner(ext, AWD_LSTM, config=TINY, path=tmp_path, device='cpu')
    with pytest.raises(ValueError, match=r"first difference at id .*load_encoder\(name, pretrained=\.\.\.\)"):
        clas.load_encoder('enc')
    clas.load_encoder('enc', pretrained=bundle)
    got, enc = clas.model.encoder.module.emb.weight, task_lm.model.encoder.emb.weight
    old = read_bundle(bundle).state['encoder.emb_dp.emb.weight']
    n_added = 0
    for tok, i in ext.vocab.stoi.items():
        if tok == 'xxfake': continue
        if tok in task.vocab: assert torch.equal(got[i], enc[task.vocab.stoi[tok]]), tok
        else: assert torch.equal(got[i], old[pre.stoi[tok]]), tok; n_added += 1
    assert n_added > 0
    lstm = {k: v for k, v in task_lm.model.encoder.state_dict().items() if 'emb' not in k}
    assert all(torch.equal(clas.model.encoder.module.state_dict()[k], v) for k, v in lstm.items())
    same = text_classifier_learner(TextDataLoaders.from_df(other, label_col='label', text_vocab=task.vocab, **kw),
                                   AWD_LSTM, config=TINY, path=tmp_path, device='cpu')
    same.load_encoder('enc', pretrained=bundle)  # the same vocabulary: `pretrained` is not needed, nor used
    assert torch.equal(same.model.encoder.module.emb.weight, enc)
    unrelated = TextDataLoaders.from_df(other.iloc[::2], label_col='label', **kw)
    with pytest.raises(ValueError, match=r'text_vocab=dls_lm\.vocab'):
        text_classifier_learner(unrelated, AWD_LSTM, config=TINY, path=tmp_path, device='cpu').load_encoder(
            'enc', pretrained=bundle)


def test_the_added_rows_must_come_from_a_model_of_the_encoders_sizes(dls, lm, tmp_path):
    "A pretrained model of other sizes than the encoder cannot give it rows: refused, naming the sizes."
    lm.save_encoder('enc')
    wider = language_model_learner(dls, AWD_LSTM, config=dict(TINY, emb_sz=4), path=tmp_path, device='cpu')
    wide_bundle = wider.export(tmp_path / 'wider')
    extra = ['zyzzyva', 'quux']
    clas_dls = TextDataLoaders.from_df(pd.DataFrame({'text': ['a b c', 'd e f'] * 8, 'label': ['x', 'y'] * 8}),
                                       text_vocab=lm.dls.vocab, extra_vocab=extra, valid_pct=0.25, seed=0, bs=4,
                                       progress=False)
    clas = text_classifier_learner(clas_dls, AWD_LSTM, config=TINY, path=lm.path, device='cpu')
    with pytest.raises(ValueError, match=r"other sizes than the encoder \(emb_sz: 4 in the pretrained model, 8 here"):
        clas.load_encoder('enc', pretrained=wide_bundle)


# ---- fastai's weights ---------------------------------------------------------------------------------------------
def fake_fastai_lm(itos, emb_sz=8, n_hid=16, n_layers=3, seed=0) -> dict:
    "A random state dict with the keys and shapes of fastai's `get_language_model(AWD_LSTM, len(itos))`."
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(len(itos), emb_sz, generator=g)
    emb[1] = 0
    state = {'0.encoder.weight': emb, '0.encoder_dp.emb.weight': emb}
    for i in range(n_layers):
        n_in, n_out = (emb_sz if i == 0 else n_hid), (n_hid if i < n_layers - 1 else emb_sz)
        raw = torch.randn(4 * n_out, n_out, generator=g)
        state.update({f'0.rnns.{i}.weight_hh_l0_raw': raw,
                      f'0.rnns.{i}.module.weight_ih_l0': torch.randn(4 * n_out, n_in, generator=g),
                      f'0.rnns.{i}.module.weight_hh_l0': raw * (torch.rand(raw.shape, generator=g) > 0.5) * 2,
                      f'0.rnns.{i}.module.bias_ih_l0': torch.randn(4 * n_out, generator=g),
                      f'0.rnns.{i}.module.bias_hh_l0': torch.randn(4 * n_out, generator=g)})
    return {**state, '1.decoder.weight': emb, '1.decoder.bias': torch.randn(len(itos), generator=g)}


@pytest.fixture(scope='module')
def fastai_itos(dls):
    "fastai's special tokens, 26 words of the task's vocabulary in another order, and 5 it does not have: 40 tokens."
    words = [t for t in dls.vocab.itos if t not in SPECIAL_TOKENS and t != 'xxfake'][:26][::-1]
    return SPECIAL_TOKENS + words + ['zyzzyva', 'quokka', 'fastai', 'wikitext', 'merity']


@pytest.fixture
def fastai_files(fastai_itos, tmp_path):
    "(pth, itos, state): a fake fastai checkpoint saved as {'model': state, 'opt': ...}, and its pickled itos."
    state = fake_fastai_lm(fastai_itos)
    torch.save({'model': state, 'opt': {'state': {}, 'hypers': [{'lr': 1e-3}]}}, tmp_path / 'lstm_fwd.pth')
    (tmp_path / 'itos_wt103.pkl').write_bytes(pickle.dumps(fastai_itos))
    return tmp_path / 'lstm_fwd.pth', tmp_path / 'itos_wt103.pkl', state


def test_import_fastai_weights(fastai_files, fastai_itos, dls, tmp_path):
    pth, itos, state = fastai_files
    out = import_fastai_weights(pth, itos, tmp_path / 'wt103-fwd', config=dict(hidden_p=0.2))
    meta = read_bundle(out, kind='language_model').meta['learner']
    sizes = dict(emb_sz=8, n_hid=16, n_layers=3)
    assert meta == {'arch': 'AWDLSTM', 'config': asdict(make_config({**sizes, 'hidden_p': 0.2})),
                    'text': {'seq_len': 72, 'backwards': False, 'text_cols': None}, 'bs': 64}
    assert json.loads((out / 'vocab.json').read_text())['itos'] == fastai_itos
    assert json.loads((out / 'tokenizer.json').read_text())['tok']['name'] == 'spacy'
    learn = language_model_learner(dls, AWD_LSTM, pretrained=out, device='cpu')
    n_real = sum(t != 'xxfake' for t in dls.vocab.itos)
    assert learn.pretrained_coverage == pytest.approx((9 + 26) / n_real)  # the special tokens and the 26 words
    emb, stoi = learn.model.encoder.emb.weight, dls.vocab.stoi
    for i, t in enumerate(fastai_itos):
        if t in stoi:
            assert torch.equal(emb[stoi[t]], state['0.encoder.weight'][i]), t
            assert learn.model.decoder.bias[stoi[t]] == state['1.decoder.bias'][i]
    for i in range(3):  # the trained (raw) hidden-to-hidden weights, not the dropped-out copy
        rnn = learn.model.encoder.rnns[i].module
        assert torch.equal(rnn.weight_hh_l0, state[f'0.rnns.{i}.weight_hh_l0_raw'])
        assert torch.equal(rnn.weight_ih_l0, state[f'0.rnns.{i}.module.weight_ih_l0'])
        assert torch.equal(rnn.bias_hh_l0, state[f'0.rnns.{i}.module.bias_hh_l0'])
    assert learn.model.decoder.weight is learn.model.encoder.emb.weight


def test_import_a_plain_state_dict_a_json_vocab_and_a_backward_model(fastai_itos, tmp_path):
    state = fake_fastai_lm(fastai_itos, n_layers=1)
    del state['0.encoder_dp.emb.weight'], state['0.rnns.0.module.weight_hh_l0']  # both optional
    torch.save(state, tmp_path / 'lm.pth')
    (tmp_path / 'itos.json').write_text(json.dumps(fastai_itos))
    out = import_fastai_weights(tmp_path / 'lm.pth', tmp_path / 'itos.json', tmp_path / 'bwd', backwards=True)
    b = read_bundle(out)
    assert b.meta['learner']['text']['backwards'] and b.meta['learner']['config']['n_layers'] == 1
    assert torch.equal(b.state['encoder.rnns.0.module.weight_hh_l0'], state['0.rnns.0.weight_hh_l0_raw'])


def test_itos_is_read_without_running_pickled_code(tmp_path, capfd):
    marker = tmp_path / 'pwned'
    class OpensAFile:
        def __reduce__(self): return (open, (str(marker), 'w'))
    class RunsAShellCommand:
        def __reduce__(self): return (os.system, ('echo pwned',))
    for i, evil in enumerate([OpensAFile(), RunsAShellCommand()]):
        (tmp_path / f'evil{i}.pkl').write_bytes(pickle.dumps(['xxunk', 'xxpad', evil]))
        with pytest.raises(ValueError, match=r'not a plain pickled list of strings: it refers to \S*(open|system)'):
            read_itos(tmp_path / f'evil{i}.pkl')
    assert not marker.exists() and 'pwned' not in capfd.readouterr().out
    (tmp_path / 'dict.pkl').write_bytes(pickle.dumps({'itos': ['a']}))
    with pytest.raises(ValueError, match='does not hold a list of strings'): read_itos(tmp_path / 'dict.pkl')
    (tmp_path / 'ints.json').write_text('["a", 1]')
    with pytest.raises(ValueError, match='does not hold a list of strings'): read_itos(tmp_path / 'ints.json')
    (tmp_path / 'itos.txt').write_text('xxunk\nxxpad\n.\n', encoding='utf-8')
    assert read_itos(tmp_path / 'itos.txt') == ['xxunk', 'xxpad', '.']
    (tmp_path / 'proto0.pkl').write_bytes(pickle.dumps(['a', 'b'], protocol=0))
    assert read_itos(tmp_path / 'proto0.pkl') == ['a', 'b']


def test_a_checkpoint_with_pickled_code_is_refused_without_running_it(fastai_files, tmp_path):
    pth, itos, state = fastai_files
    marker = tmp_path / 'pwned'
    class OpensAFile:
        def __reduce__(self): return (open, (str(marker), 'w'))
    torch.save({'model': state, 'learner': OpensAFile()}, tmp_path / 'learner.pth')
    with pytest.raises(ValueError, match=r'holds more than tensors \(it refers to \S*open.*not loaded here'):
        import_fastai_weights(tmp_path / 'learner.pth', itos, tmp_path / 'out')
    assert not marker.exists() and not (tmp_path / 'out').exists()


def refusal(tmp_path, state, itos_list, match, **kwargs):
    torch.save(state, tmp_path / 'bad.pth')
    (tmp_path / 'bad.pkl').write_bytes(pickle.dumps(itos_list))
    with pytest.raises(ValueError, match=match):
        import_fastai_weights(tmp_path / 'bad.pth', tmp_path / 'bad.pkl', tmp_path / 'out', **kwargs)
    assert not (tmp_path / 'out').exists()


def test_checkpoints_that_do_not_fit_are_refused(fastai_itos, tmp_path):
    good = fake_fastai_lm(fastai_itos)
    refusal(tmp_path, good, fastai_itos[:-1], r'lists 39 tokens but the embedding in .* has 40 rows')
    swapped = [fastai_itos[1], fastai_itos[0], *fastai_itos[2:]]
    refusal(tmp_path, good, swapped, "'xxpad' at id 0; our AWD-LSTM keeps padding at id 1")
    refusal(tmp_path, {k: v for k, v in good.items() if k != '0.rnns.1.module.bias_hh_l0'}, fastai_itos,
            r"lacks \['0.rnns.1.module.bias_hh_l0'\]")
    refusal(tmp_path, {**good, '2.head.weight': torch.zeros(2)}, fastai_itos, r"does not: \['2.head.weight'\]")
    refusal(tmp_path, {**good, '1.decoder.weight': torch.zeros(40, 8)}, fastai_itos, '1.decoder.weight differs')
    refusal(tmp_path, good, fastai_itos, r'other sizes than \S*bad.pth has \(n_hid: 16 in the pretrained model, 32 here\)',
            config=dict(n_hid=32))
    wide = {**good, '0.rnns.2.module.weight_ih_l0': torch.zeros(32, 12)}
    refusal(tmp_path, wide, fastai_itos, r'0.rnns.2.module.weight_ih_l0 in .* has shape \(32, 12\).*needs \(32, 16\)')
    refusal(tmp_path, {'weight': torch.zeros(2)}, fastai_itos, "not fastai's AWD_LSTM language model")
    (tmp_path / 'text.pth').write_text('not a checkpoint')
    with pytest.raises(ValueError, match='not a PyTorch checkpoint of plain tensors'):
        import_fastai_weights(tmp_path / 'text.pth', tmp_path / 'bad.pkl', tmp_path / 'out')


# ---- a real fastai checkpoint ------------------------------------------------------------------------------------------
FIXTURES = Path(__file__).resolve().parent / 'data'


def test_weights_saved_by_fastai_give_fastai_s_outputs(tmp_path):
    """tests/data/fastai_tiny_*: a tiny AWD_LSTM language model made and saved by fastai 2.8.12 itself
    (tests/data/make_fastai_fixture.py, run in fastai's virtualenv), and the logits fastai's model gave for a fixed
    input. Imported, our model must give the same logits: the key mapping is right, not merely loadable."""
    from ulmfit_learner import load_learner
    from ulmfit_learner.pretrained import import_fastai_weights
    folder = import_fastai_weights(FIXTURES / 'fastai_tiny_lm.pth', FIXTURES / 'fastai_tiny_itos.pkl', tmp_path / 'b')
    learn = load_learner(folder, device='cpu')
    expected = torch.load(FIXTURES / 'fastai_tiny_expected.pt', weights_only=True)
    model = learn.model.eval()
    model.reset()
    with torch.no_grad(): logits = model(expected['x'])
    assert learn.model_spec['config']['n_layers'] == 3 and learn.model_spec['config']['emb_sz'] == 8
    assert torch.allclose(logits, expected['logits'], atol=1e-5)
