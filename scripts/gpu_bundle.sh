#!/usr/bin/env bash
# Copies pytest and its pure-Python dependencies from .venv into .gpu_vendor/ (git-ignored), so that
# scripts/gpu_check.sh can run the CUDA-marked tests on a GPU machine without pytest: carry
# .gpu_vendor along with the tree (about 15 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
rm -rf .gpu_vendor
mkdir .gpu_vendor
for item in pytest _pytest py.py pluggy iniconfig packaging pygments; do
  cp -r "$site/$item" .gpu_vendor/
done
for dist in pytest pluggy iniconfig packaging pygments; do
  cp -r "$site/$dist"-*.dist-info .gpu_vendor/
done
find .gpu_vendor -name __pycache__ -prune -exec rm -rf {} +
echo "wrote .gpu_vendor ($(du -sh .gpu_vendor | cut -f1)): carry it to the GPU machine with the tree"
