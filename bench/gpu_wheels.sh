#!/usr/bin/env bash
# Run HERE (not on the GPU machine) before a device call: downloads into .whl/ (git-excluded)
# the wheels the lent GPU machine's image lacks. Its python3 is 3.12 and already holds torch,
# transformers, peft, accelerate, tokenizers and safetensors; nothing can be fetched there.
# Versions follow this checkout's venv, so both machines run the same library code.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude || echo '/.whl/' >> .git/info/exclude
mapfile -t PINS < <(.venv/bin/python - <<'PY'
from importlib.metadata import version
for name in ("pydantic", "pydantic-core", "annotated-types", "typing-inspection",
             "trl", "datasets", "dill", "multiprocess"):
    print(f"{name}=={version(name)}")
PY
)
rm -rf .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl "${PINS[@]}"
ls -1 .whl
du -sh .whl
