"""Loading deploy/ files, and the environment variable names the service really reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices

from infra.settings import Settings
from tests.support.paths import REPO

DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"

# The secrets the deploy files must only ever pass through, never hold.
SECRET_NAMES = {
    "OPENAI_API_KEY",
    "TWILIO_AUTH_TOKEN",
    "OPENAI_WEBHOOK_SECRET",
    "RESPONDER_SESSION_SECRET",
    "RESPONDER_ADMIN_TOKEN",
    "RESPONDER_SUPERVISOR_TOKEN",
}


def settings_env_names() -> set[str]:
    """Every variable name :class:`Settings` reads (prefixed names and standard aliases)."""
    names: set[str] = set()
    for field_name, field in Settings.model_fields.items():
        names.add(f"RESPONDER_{field_name.upper()}")
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias)
    return names


def known_env_names() -> set[str]:
    return settings_env_names()


def load_docs(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def kustomize_resources() -> dict[tuple[str, str], dict[str, Any]]:
    """The resources kustomization.yaml applies, by (kind, name)."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    resources: dict[tuple[str, str], dict[str, Any]] = {}
    for name in kustomization["resources"]:
        for doc in load_docs(K8S / name):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in resources, f"{key} defined twice"
            resources[key] = doc
    return resources


def parse_dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions
