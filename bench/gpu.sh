#!/usr/bin/env bash
# The GPU benchmark (issue 19) in one prepared call, and what a bare, closed GPU host needs for it.
#
# Here (network to PyPI):
#   bash bench/gpu.sh wheelhouse [--full]   Python 3.12 manylinux wheels of bench/gpu_requirements.txt
#                                           (+ bench/gpu_requirements_report.txt with --full) -> dist/gpu_wheels/,
#                                           with MANIFEST.txt (file, bytes). No torch: the host keeps its own.
#   bash bench/gpu.sh bundle [--full]       the same wheels re-zipped uncompressed and tar'ed with xz ->
#                                           dist/gpu_bundle.tar.xz (about 2/3 of the wheels' size: what fits a
#                                           64 MiB transfer limit); the host unpacks it with Python alone
#   bash bench/gpu.sh smoke [ARGS]          bench/gpu.py --smoke in .venv-train: CPU, tiny sizes, the same code
#                                           paths (the default test suite runs it: tests/test_gpu_bench.py)
# On the GPU host (Python 3.12 with its own CUDA torch, no package index; this working tree and dist/gpu_wheels/
# or dist/gpu_bundle.tar.xz copied there):
#   bash bench/gpu.sh run [ARGS]            set-up (once; under a minute) then bench/gpu.py: JSON to
#                                           bench/results_gpu_<date>.json and the BENCHMARKS.md rows on stderr
#   bash bench/gpu.sh setup                 only the set-up: the wheels installed --no-deps into .gpu-site/, put
#                                           first on PYTHONPATH, so numpy 1.26 / pyarrow 14 shadow a system numpy 2
#                                           and the host's torch (system, venv or conda alike) stays in use
# PYTHON names the host's interpreter (default python3). GPU_PYTHON_VERSION (default 3.12) is the Python the
# wheelhouse is built for (recorded in dist/gpu_wheels/PYTHON_VERSION; set-up refuses another).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WHEELS="$ROOT/dist/gpu_wheels"
BUNDLE="$ROOT/dist/gpu_bundle.tar.xz"
SITE="$ROOT/.gpu-site"
PY="${PYTHON:-python3}"
PYV="${GPU_PYTHON_VERSION:-3.12}"
log() { echo "[gpu.sh] $*" >&2; }

reqs() {  # the requirement files of the wheelhouse; --full adds the report's
  echo bench/gpu_requirements.txt
  if [ "${1:-}" = "--full" ]; then echo bench/gpu_requirements_report.txt; fi
}

wheelhouse() {
  local pip_py; pip_py="$(command -v python3.11 || command -v python3)"
  rm -rf "$WHEELS"; mkdir -p "$WHEELS"
  local files=(); for f in $(reqs "${1:-}"); do files+=(-r "$f"); done
  "$pip_py" -m pip download -q --no-deps --only-binary :all: --dest "$WHEELS" \
    --python-version "$PYV" --implementation cp --abi "cp${PYV/./}" --abi abi3 --abi none \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --platform any "${files[@]}" >&2
  if ls "$WHEELS" | grep -qi '^torch-'; then log "ERROR: torch in the wheelhouse"; exit 1; fi
  (cd "$WHEELS" && for w in *.whl; do printf '%s %s\n' "$w" "$(stat -c %s "$w")"; done) > "$WHEELS/MANIFEST.txt"
  echo "$PYV" > "$WHEELS/PYTHON_VERSION"
  log "$(ls "$WHEELS"/*.whl | wc -l) wheels, $(du -sb "$WHEELS" | cut -f1) bytes in $WHEELS (MANIFEST.txt)"
}

bundle() {
  wheelhouse "${1:-}"
  local stage; stage="$(mktemp -d)"; trap 'rm -rf "$stage"' RETURN
  mkdir -p "$stage/gpu_wheels"
  # the same wheels with stored (uncompressed) members: valid wheels (RECORD hashes are of the contents), and xz
  # over the whole compresses the shared libraries far better than each wheel's own deflate
  "$(command -v python3.11 || command -v python3)" - "$WHEELS" "$stage/gpu_wheels" <<'EOF'
import sys, zipfile
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
for w in sorted(src.glob("*.whl")):
    with zipfile.ZipFile(w) as zin, zipfile.ZipFile(dst / w.name, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info), compress_type=zipfile.ZIP_STORED)
for name in ("MANIFEST.txt", "PYTHON_VERSION"):
    (dst / name).write_text((src / name).read_text())
EOF
  tar -C "$stage" -cf - gpu_wheels | xz -T0 -6 > "$BUNDLE.tmp"
  mv "$BUNDLE.tmp" "$BUNDLE"
  log "$BUNDLE: $(stat -c %s "$BUNDLE") bytes"
}

setup() {
  local want; want="$(cat bench/gpu_requirements*.txt | sha256sum | cut -d' ' -f1) $("$PY" -c 'import sys; print(sys.version)')"
  if [ "$(cat "$SITE/.stamp" 2>/dev/null || true)" = "$want" ]; then return; fi
  if [ ! -d "$WHEELS" ]; then
    [ -f "$BUNDLE" ] || { log "ERROR: neither $WHEELS nor $BUNDLE (build one here: bash bench/gpu.sh bundle)"; exit 1; }
    log "unpacking $BUNDLE"
    "$PY" -c 'import sys, tarfile; tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2])' "$BUNDLE" "$ROOT/dist"
  fi
  local built; built="$(cat "$WHEELS/PYTHON_VERSION" 2>/dev/null || echo 3.12)"
  "$PY" -c 'import sys; v = sys.argv[1]; assert "%d.%d" % sys.version_info[:2] == v, f"the wheelhouse is for Python {v}, not {sys.version} (GPU_PYTHON_VERSION=... bash bench/gpu.sh wheelhouse)"' "$built"
  rm -rf "$SITE"; mkdir -p "$SITE"
  local t0=$SECONDS
  if "$PY" -m pip --version >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$WHEELS"/*.whl >&2
  else  # no pip on the host: a wheel of pure and platform libraries is a zip to unpack
    log "no pip for $PY: unpacking the wheels"
    for w in "$WHEELS"/*.whl; do "$PY" -m zipfile -e "$w" "$SITE"; done
  fi
  cp bench/gpu_sitecustomize.py "$SITE/sitecustomize.py"
  PYTHONPATH="$SITE:$ROOT" "$PY" - <<'EOF' >&2
import numpy, pyarrow, petastorm, torch
assert numpy.__version__.startswith("1.26"), numpy.__version__
assert pyarrow.__version__.startswith("14."), pyarrow.__version__
torch.from_numpy(numpy.zeros(2))  # the host's torch with numpy 1.26 (torch >= 2.3 works with numpy 1 and 2)
print(f"[gpu.sh] torch {torch.__version__} (cuda {torch.version.cuda}, {torch.cuda.device_count()} GPUs) "
      f"from {torch.__file__}; numpy {numpy.__version__}, pyarrow {pyarrow.__version__}, petastorm {petastorm.__version__}")
EOF
  echo "$want" > "$SITE/.stamp"
  log "set-up in $((SECONDS - t0)) s"
}

cmd="${1:-run}"; shift || true
case "$cmd" in
  wheelhouse) wheelhouse "$@" ;;
  bundle) bundle "$@" ;;
  setup) setup ;;
  smoke|--smoke) exec "$ROOT/.venv-train/bin/python" bench/gpu.py --smoke "$@" ;;
  run)
    setup
    out="bench/results_gpu_$(date -u +%F_%H%M).json"
    PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" bench/gpu.py --out "$out" "$@" ;;
  *) echo "usage: bash bench/gpu.sh wheelhouse|bundle [--full] | setup | run [ARGS] | smoke [ARGS]" >&2; exit 2 ;;
esac
