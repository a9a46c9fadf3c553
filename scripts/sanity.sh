#!/usr/bin/env bash
# ansible-test sanity needs the collection under .../ansible_collections/<ns>/<name>:
# copy the working tree (tracked and untracked, not ignored) there and run it,
# with no ignore file. ansible-test bootstraps pip in its venvs with a get-pip
# script from ci-files.testing.ansible.com, which this network does not reach;
# a stand-in that uses the interpreter's own ensurepip is cached in its place
# (the requirements themselves come from PyPI as usual).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=$(mktemp -d /tmp/ascend-sanity.XXXXXX)
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/ascend_ops/vllm"
mkdir -p "$dest"
git ls-files -co --exclude-standard -z | grep -zv '^\.collections/' | rsync -a --from0 --ignore-missing-args --files-from=- . "$dest/"
(cd "$dest" && git init -q && git add -A)

pip_version=$(.venv/bin/python - <<'PY'
import re, ansible_test, pathlib
src = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
print(re.search(r"pip='([0-9.]+)'", src.read_text()).group(1))
PY
)
cache="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
mkdir -p "$(dirname "$cache")"
cat > "$cache" <<'PY'
"""Stand-in for get-pip.py: pip from ensurepip, then `pip install` the requested packages."""
import ensurepip
import os
import runpy
import sys

saved = dict(os.environ)
ensurepip.bootstrap()  # sets PIP_CONFIG_FILE=/dev/null in this process: undo it for the install below
os.environ.clear()
os.environ.update(saved)
sys.argv = ["pip", "install"] + [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
runpy.run_module("pip", run_name="__main__", alter_sys=True)
PY
cd "$dest"
"$repo/.venv/bin/ansible-test" sanity --venv --python 3.11 "$@"
