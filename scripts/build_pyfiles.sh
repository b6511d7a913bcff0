#!/usr/bin/env bash
# The library as one zip for spark-submit --py-files: the packages dynamix_spark, schemas and jobs (Python
# sources only, no __pycache__), byte-for-byte reproducible (sorted entries, fixed timestamps), so the same
# commit always ships the same file. `scripts/spark.sh submit --py-files .../dynamix_pyfiles.zip` runs this
# itself when the zip is missing or older than the sources.
#   bash scripts/build_pyfiles.sh [OUT_DIR]      # default dist/; prints the zip's path
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-$ROOT/dist}"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY="$(command -v python3)"
mkdir -p "$OUT_DIR"
"$PY" - "$ROOT" "$OUT_DIR/dynamix_pyfiles.zip" <<'EOF'
import os, sys, zipfile
root, out = sys.argv[1], sys.argv[2]
files = []
for pkg in ("dynamix_spark", "schemas", "jobs"):
    if not os.path.isfile(os.path.join(root, pkg, "__init__.py")):
        sys.exit(f"build_pyfiles: {pkg}/__init__.py missing")
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, pkg)):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        files += [os.path.join(dirpath, f) for f in filenames if f.endswith(".py")]
tmp = f"{out}.{os.getpid()}.tmp"  # two builds at once (two spark.sh submits) do not share a temporary file
with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
    for path in sorted(files):
        info = zipfile.ZipInfo(os.path.relpath(path, root), date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(path, "rb") as f:
            z.writestr(info, f.read())
os.replace(tmp, out)  # atomic: a running spark-submit never sees half a zip
print(out)
EOF
