"""Make the collection importable (via the checkout's .collections symlink) and run modules through ansible."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / ".collections"))


@pytest.fixture
def run_module() -> Callable[..., Dict[str, Any]]:
    """Run ``ansible localhost -m ascend_ops.vllm.<name> -a <json>`` from the checkout; return its result."""

    def run(name: str, args: Dict[str, Any], check: bool = False) -> Dict[str, Any]:
        venv_bin = Path(sys.executable).parent
        argv = [str(venv_bin / "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-o",
                "-e", f"ansible_python_interpreter={sys.executable}",
                "-m", f"ascend_ops.vllm.{name}", "-a", json.dumps(args)]
        if check:
            argv.append("--check")
        env = dict(os.environ, ANSIBLE_DEPRECATION_WARNINGS="0", ANSIBLE_NOCOLOR="1")
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("localhost | ")), None)
        assert line is not None, f"no result line from ansible (rc={proc.returncode}): {proc.stdout}{proc.stderr}"
        status, _sep, payload = line[len("localhost | "):].partition(" => ")
        result = json.loads(payload)
        assert (status == "SUCCESS") == (proc.returncode == 0), (status, proc.returncode)
        result["_status"] = status.rstrip("!")
        return result

    return run
