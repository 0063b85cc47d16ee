"""Process every notebook for the docs site, as `nbdev-docs` does before it calls quarto.

quarto itself cannot be installed on CI, so this stops short of rendering: it regenerates the quarto
config and sidebar, builds the doc-link index, and runs nbdev's doc processors (which execute each
notebook's import and `show_doc` cells) over every notebook into `_proc/`. A notebook that the docs
build would choke on fails here.
"""
import os
import sys
import warnings

import nbdev.doclinks
from nbdev.config import get_config
from nbdev.quarto import nbdev_sidebar, refresh_quarto_yml
from nbdev.serve import proc_nbs

# a cell mixing imports with other code is executed out of context by the doc processors: fail on it
warnings.filterwarnings('error', message='Found cells containing imports')

cfg = get_config()
os.chdir(cfg.config_path)
refresh_quarto_yml()
nbdev.doclinks._build_modidx()
nbdev_sidebar.__wrapped__(path=cfg.nbs_path)
proc_nbs(cfg.nbs_path, n_workers=0, force=True)
processed = sorted(p.name for p in (cfg.config_path / '_proc').glob('*.ipynb'))
expected = sorted(p.name for p in cfg.nbs_path.glob('*.ipynb'))
missing = set(expected) - set(processed)
if missing:
    sys.exit(f'docs processing skipped notebooks: {sorted(missing)}')
print(f'docs: processed {len(processed)} notebooks into _proc/')
