# Run with the fastai virtualenv: writes a tiny fastai AWD_LSTM language model as fastai saves it, its itos pickle,
# and the logits fastai's model gives for a fixed input (eval mode), so our importer can be checked against them.
import pickle, sys, torch
from fastai.text.all import AWD_LSTM, awd_lstm_lm_config, get_language_model
from fastai.text.all import defaults
out = sys.argv[1]
torch.manual_seed(0)
itos = ['xxunk', 'xxpad', 'xxbos', 'xxeos', 'xxfld', 'xxrep', 'xxwrep', 'xxup', 'xxmaj'] + [f'w{i}' for i in range(31)]
cfg = dict(awd_lstm_lm_config, emb_sz=8, n_hid=16, n_layers=3)
model = get_language_model(AWD_LSTM, len(itos), config=cfg)
with torch.no_grad():
    for p in model.parameters(): p.normal_(0, 0.3)
model.eval(); model.reset()
x = torch.randint(9, len(itos), (2, 7), generator=torch.Generator().manual_seed(1))
logits = model(x)[0]
torch.save(model.state_dict(), f'{out}/fastai_tiny_lm.pth')
with open(f'{out}/fastai_tiny_itos.pkl', 'wb') as f: pickle.dump(itos, f)
torch.save({'x': x, 'logits': logits.detach()}, f'{out}/fastai_tiny_expected.pt')
print(list(model.state_dict().keys()))
