"""avbr.provenance: the commit in a checkout, the package version and file hash outside one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from avbr.provenance import code_provenance, describe_commit, git_state, package_state, provenance

REPO = Path(__file__).resolve().parents[1]
# pyproject.toml's package-dir: where each import package's sources live in the checkout.
WHEEL_LAYOUT = {"avbr": "avbr", "avbr/adapters": "adapters", "avbr/envs": "envs", "avbr/eval": "eval",
                "avbr/configs": "configs"}


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


def test_checkout_commit_matches_git() -> None:
    state = git_state()
    assert state["commit"] == _git("rev-parse", "HEAD")
    assert state["dirty"] == bool(_git("status", "--porcelain", "--untracked-files=no"))
    record = provenance()
    assert set(record) == {"git", "package", "versions", "host", "platform", "created_utc"}
    assert set(code_provenance()) == {"git", "package", "versions"}
    assert record["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert describe_commit(record).startswith(state["commit"][:10])
    # Benchmarks record the same provenance next to the machine's load.
    from avbr.eval.benchmarks.registry import machine  # noqa: PLC0415

    assert machine()["provenance"]["git"] == state


def test_not_a_checkout(tmp_path: Path) -> None:
    assert git_state(tmp_path) == {"commit": None, "dirty": None}
    # A folder inside some other repository (a venv in a checkout) is not that repository's code.
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "site").mkdir()
    assert git_state(tmp_path / "site") == {"commit": None, "dirty": None}


def test_installed_layout_records_version_and_file_hash(tmp_path: Path) -> None:
    """The wheel layout (sub-packages inside ``avbr/``), imported from outside any checkout: no commit,
    the installed version, and the same file hash as the checkout it was built from."""
    site = tmp_path / "site"
    for dest, src in WHEEL_LAYOUT.items():
        shutil.copytree(REPO / src, site / dest, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # a surrounding repository is ignored
    code = ("import json, avbr.provenance as p; print(json.dumps({'file': p.__file__, 'git': p.git_state(), "
            "'package': p.package_state(), 'text': p.describe_commit(p.code_provenance())}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["file"].startswith(str(site))
    assert out["git"] == {"commit": None, "dirty": None}
    here = package_state()
    assert out["package"] == here and here["version"] == "0.1.0" and len(here["files_sha256"]) == 64
    assert out["text"] == f"no git commit (avbr 0.1.0, files {here['files_sha256'][:8]})"
    # One changed byte in one installed file changes the hash.
    target = site / "avbr" / "eval" / "probing" / "records.py"
    target.write_text(target.read_text() + "\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=300)
    assert json.loads(proc.stdout)["package"]["files_sha256"] != here["files_sha256"]


def test_describe_commit_without_anything() -> None:
    assert describe_commit(None) == "unknown"
    assert describe_commit({"commit": "0123456789abcdef", "dirty": True}) == "0123456789 (dirty)"
