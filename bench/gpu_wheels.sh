#!/usr/bin/env bash
# Prepares the folder that bench/gpu_acceptance.py needs on a GPU machine without network: the wheels of
# Snakemake and of every package the workflow needs that a CUDA PyTorch image lacks (Python 3.12, x86-64
# Linux), and the PEMS08 files (flow series, distances) and the PeMSD7(M) distances the study and the
# benchmarks read. Run it here, with network, from the repository root:
#
#   bash bench/gpu_wheels.sh [FOLDER]        # FOLDER defaults to .gpu_carry (ignored by git)
#
# Layout: FOLDER/wheels/*.whl, FOLDER/data/pems08/{pems08_288_62_170.mat,distance.csv},
# FOLDER/data/pemsd7m/PeMSD7_W_228.csv. Each package is pinned to the version installed in this environment
# (the versions the tests ran with; PYTHON names its interpreter, default python3). The data come from
# KDSTGCN_MIRROR, else ../shared/data. PY_VERSION=3.11 fetches the same for a local Python 3.11, to try the
# install without network here.
set -euo pipefail
cd "$(dirname "$0")/.."
folder=${1:-.gpu_carry}
python=${PYTHON:-python3}
py_version=${PY_VERSION:-3.12}  # the GPU machine's Python
mirror=${KDSTGCN_MIRROR:-../shared/data}

# Snakemake 9 and its dependencies, jsonschema (the config schema) and Optuna (the tuning rules; the test suite
# imports it), less what the image already holds (attrs, jinja2, markupsafe, packaging, psutil, pyyaml,
# requests, tabulate, tqdm, typing-extensions, wrapt, ...)
packages=(
  snakemake snakemake-interface-common snakemake-interface-executor-plugins snakemake-interface-logger-plugins
  snakemake-interface-report-plugins snakemake-interface-scheduler-plugins snakemake-interface-storage-plugins
  annotated-types argparse-dataclass conda-inject configargparse connection-pool docutils dpath
  fastjsonschema gitdb gitpython greenlet humanfriendly immutables jsonschema jsonschema-specifications
  jupyter-core nbformat platformdirs pulp pydantic pydantic-core referencing rpds-py smart-open smmap
  sqlalchemy sqlmodel tenacity throttler traitlets typing-inspection yte
  optuna alembic colorlog mako
)
pins=$("$python" - "${packages[@]}" <<'EOF'
import importlib.metadata as md
import sys

missing = []
for name in sys.argv[1:]:
    try:
        print(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        missing.append(name)
if missing:
    sys.exit(f"not installed here, so no version to pin: {' '.join(missing)} (pip install -e . first)")
EOF
)

rm -rf "$folder/wheels" "$folder/data"
mkdir -p "$folder/wheels" "$folder/data/pems08" "$folder/data/pemsd7m"
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
           manylinux2014_x86_64 manylinux1_x86_64 manylinux_2_5_x86_64; do
  platforms+=(--platform "$tag")
done
for pin in $pins; do
  if ! "$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$py_version" \
      --implementation cp "${platforms[@]}" -d "$folder/wheels" "$pin" 2>/dev/null; then
    # published as source only (connection-pool): built here, which works for pure-Python packages alone
    "$python" -m pip wheel --quiet --no-deps -w "$folder/wheels" "$pin"
  fi
done
impure=$(ls "$folder/wheels" | grep -v -e '-none-any\.whl$' -e "cp${py_version/./}" -e 'abi3' || true)
if [ -n "$impure" ]; then
  echo "wheels built for another Python than $py_version: $impure" >&2
  exit 1
fi

for name in pems08/pems08_288_62_170.mat pems08/distance.csv pemsd7m/PeMSD7_W_228.csv; do
  source="$mirror/$name"  # the mirror's own layout first, else the first file of that name below it
  [ -f "$source" ] || source=$(find "$mirror" -name "$(basename "$name")" -print -quit 2>/dev/null || true)
  if [ -z "$source" ]; then
    echo "$(basename "$name") not found below $mirror: set KDSTGCN_MIRROR to the folder holding the raw files" >&2
    exit 1
  fi
  install -m 0644 "$source" "$folder/data/$name"  # writable: a second run replaces it
done
echo "$folder: $(ls "$folder/wheels" | wc -l) wheels, $(du -sh "$folder" | cut -f1) in all (the carry limit is 64 MiB)"
