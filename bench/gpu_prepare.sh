#!/usr/bin/env bash
# Run HERE (where PyPI and ../shared are): puts into .gpu/ (git-ignored) what bench/gpu_session.sh needs on the GPU
# machine, which has no network and no ../shared:
#   .gpu/whl-fastai/  fastai 2.8.12 and what it needs beyond the device image (about 4 MB): the throughput
#                     benchmark's other half
#   .gpu/whl-spacy/   spaCy 3.8 and what it needs (about 58 MB): our tokenizer, for the pretraining checks
#   .gpu/data/        the slices of ../shared/data that the CUDA tests and the pretraining probe read (about 1.5 MB)
# Two wheel folders, because the 64 MiB a device call may carry holds one of them with the repository, not both:
# the session runs in two calls, each carrying its folder and .gpu/data (bench/README.md, "On a GPU").
# The device image has torch, numpy, pandas, matplotlib, safetensors, sentencepiece, tqdm, pytest, requests, rich,
# typer, jinja2, torchvision, scikit-learn, scipy (../.library/device/KINDS.md); compiled wheels are fetched for
# its CPython 3.12 on x86-64 Linux (PY=3.11 fetches this machine's, to rehearse the install here).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-3.12}
DEST=${DEST:-.gpu}
# Pinned to what resolved on 2026-12-02 against the device image's own packages.
FASTAI=(
  fastai==2.8.12 fastcore==2.2.41 fastdownload==0.0.8 fastprogress==1.1.6 fasttransform==0.0.5
  plum-dispatch==2.9.0 beartype==0.23.1 python-fasthtml==0.14.14 starlette==1.10.0 uvicorn==0.55.0
  oauthlib==4.0.1 itsdangerous==2.2.0 python-multipart==0.0.34 beautifulsoup4==4.15.0 soupsieve==4.1.3
  httpx2==2.16.2 httpcore2==2.16.2 python-dotenv==1.2.4
)
SPACY=(
  spacy==3.8.18 spacy-legacy==3.0.12 spacy-loggers==1.0.5 thinc==8.3.14 blis==1.3.4 cymem==2.0.16
  preshed==3.0.15 murmurhash==1.0.16 srsly==2.5.6 wasabi==1.1.3 catalogue==2.0.10 confection==1.3.4
  weasel==1.0.1 cloudpathlib==0.26.0 smart_open==9.0.4 pydantic==2.14.4 pydantic_core==2.50.5
  annotated-types==0.8.0 typing-inspection==0.4.5 typing_extensions==4.16.0
)
PLATFORMS=()
for n in 39 35 34 31 28 27 24 17; do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
download() {  # download DIR SPEC...
  local dir=$1; shift
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PY" --implementation cp \
    "${PLATFORMS[@]}" -d "$dir" "$@" 2>&1 | grep -v 'is ignored: it is neither'
  return "${PIPESTATUS[0]}"
}
fetch() {  # fetch DIR PACKAGE...
  local dir=$1; shift
  rm -rf "$dir"; mkdir -p "$dir"
  if [ "$PY" = 3.12 ]; then download "$dir" "$@" || exit 1
  else  # a rehearsal for another Python: each pin where that Python has it, else the newest it has
    for spec in "$@"; do download "$dir" "$spec" >/dev/null || download "$dir" "${spec%%==*}" || exit 1; done
  fi
  [ "$(ls "$dir"/*.whl | wc -l)" -eq $# ] || { echo "gpu_prepare: expected $# wheels in $dir" >&2; exit 1; }
  echo "$dir: $# wheels, $(du -sh "$dir" | cut -f1)"
}
fetch "$DEST/whl-fastai" "${FASTAI[@]}"
fetch "$DEST/whl-spacy" "${SPACY[@]}"

DATA=../shared/data
rm -rf "$DEST/data"; mkdir -p "$DEST/data/trec" "$DEST/data/general-corpus"
cp "$DATA/trec/train.csv" "$DEST/data/trec/"                              # tests/test_pretrain.py's questions
cp "$DATA/general-corpus/valid.txt.xz" "$DEST/data/general-corpus/"      # the pretraining probe's corpus
echo "$DEST/data: $(du -sh "$DEST/data" | cut -f1)"
