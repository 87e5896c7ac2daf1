"""The CLI: ``beardnet --help``, every subcommand's ``--help``, entry points, CI script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from beardnet.cli import REGISTRY, main

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], check=False, capture_output=True, text=True,
                          cwd=ROOT,
                          timeout=timeout)


def test_top_level_help_lists_every_subcommand_without_heavy_imports():
    r = _run("-m", "beardnet.cli", "--help")
    assert r.returncode == 0, r.stderr
    for name in ("synth", "s3", "acquire", "train", "eval", "ablate", "transform", "bench", "demo"):
        assert name in REGISTRY
        assert f"    {name} " in r.stdout
    probe = _run("-c", "import sys; from beardnet.cli import build_parser; build_parser(None); "
                 "print(sorted(m for m in ('torch','ray','cv2','mediapipe','boto3') "
                 "if m in sys.modules))")
    assert probe.stdout.strip() == "[]", probe.stdout + probe.stderr


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_subcommand_help(name):
    r = _run("-m", "beardnet.cli", name, "--help")
    assert r.returncode == 0, r.stderr
    assert f"usage: beardnet {name}" in r.stdout
    assert "--config FILE" in r.stdout and "--set" in r.stdout
    # every option the parser knows appears in the help text
    from beardnet.cli import build_parser

    parser = build_parser(name)
    sub = parser._subparsers._group_actions[0].choices[name]
    for action in sub._actions:
        for opt in action.option_strings:
            assert opt in r.stdout, f"{opt} missing from `beardnet {name} --help`"
            if opt.startswith("--") and opt != "--help":
                assert action.help, f"`beardnet {name} {opt}` has no help text"


def test_s3_serve_help_documents_options():
    r = _run("-m", "beardnet.cli", "s3", "serve", "--help")
    assert r.returncode == 0
    for opt in ("--data-dir", "--port", "--bucket"):
        assert opt in r.stdout


def test_no_subcommand_and_unavailable(capsys, monkeypatch):
    assert main([]) == 2
    monkeypatch.setitem(REGISTRY, "ghost", ("beardnet.no_such_module", "a missing module"))
    assert main(["ghost"]) == 2
    assert "not available" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["no-such-command"])


def test_jobs_entry_points():
    jobs = sorted(p.stem for p in (ROOT / "jobs").glob("*.py"))
    assert jobs == sorted(["synth", "train", "transform", "eval", "ablate", "acquire", "bench",
                           "demo"])
    for j in jobs:
        text = (ROOT / "jobs" / f"{j}.py").read_text()
        assert f'main(["{j}", *sys.argv[1:]])' in text
    r = _run("jobs/demo.py", "--help")
    assert r.returncode == 0 and "usage: beardnet demo" in r.stdout


def test_ci_and_loopback_scripts():
    ci = ROOT / ".ci" / "run"
    assert ci.is_file() and os.access(ci, os.X_OK)
    assert "make test" in ci.read_text()
    lb = ROOT / "infra" / "loopback.sh"
    assert os.access(lb, os.X_OK)
    r = subprocess.run([str(lb), "sh", "-c", 'echo "$RAY_AUTH_MODE $AWS_EC2_METADATA_DISABLED"'],
                       check=False, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "disabled true"
    r = subprocess.run([str(lb), "false"], check=False, capture_output=True, timeout=30)
    assert r.returncode == 1
    makefile = (ROOT / "Makefile").read_text()
    for target in ("venv:", "test:", "test-fast:", "demo:", "bench:", "bench-quick:", "lint:",
                   "clean:"):
        assert f"\n{target}" in makefile
