"""deploy/compose.yaml: parses under the compose specification model, and wires the service,
Redis (AOF via deploy/redis.conf) and the optional split-mode supervisor correctly."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from compose_spec import PyCompose, parse_duration

from responder.server.drain import SHUTDOWN_MARGIN_S
from tests.support.deploy import DEPLOY, REPO, SECRET_NAMES, known_env_names

COMPOSE = DEPLOY / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def test_compose_file_is_valid_per_the_spec_model() -> None:
    parsed = PyCompose.from_yaml(COMPOSE.read_text(encoding="utf-8"))
    parsed.validate()  # every volume, network, secret referenced is declared
    assert sorted(parsed.service_names()) == ["redis", "responder", "supervisor"]


def test_spec_model_rejects_a_broken_compose_file(compose: dict[str, Any]) -> None:
    broken = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    broken["services"]["responder"]["stop_grace_periode"] = "30s"  # misspelt key
    with pytest.raises(ValueError, match="stop_grace_periode"):
        PyCompose.from_yaml(yaml.safe_dump(broken))
    bad_duration = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    bad_duration["services"]["responder"]["stop_grace_period"] = "thirty seconds"
    with pytest.raises(ValueError, match="stop_grace_period"):
        PyCompose.from_yaml(yaml.safe_dump(bad_duration))


def test_references_between_services_and_volumes_resolve(compose: dict[str, Any]) -> None:
    """What the spec model does not check itself (named volumes, depends_on targets)."""
    services = compose["services"]
    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= set(services), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in compose["volumes"], (name, source)


def test_responder_builds_the_image_and_drains_within_the_grace_period(compose: dict[str, Any]) -> None:
    responder = compose["services"]["responder"]
    context = (DEPLOY / responder["build"]["context"]).resolve()
    assert context == REPO
    assert (context / responder["build"]["dockerfile"]).is_file()
    assert "profiles" not in responder
    drain_s = float(responder["environment"]["RESPONDER_DRAIN_S"])
    # the process is gone SHUTDOWN_MARGIN_S after the drain limit (test_drain_sigterm.py): the
    # grace period covers both with room to spare (issue 14, item 11: 30.5 s against 30 s once)
    assert parse_duration(responder["stop_grace_period"]) >= drain_s + SHUTDOWN_MARGIN_S + 5
    assert responder.get("stop_signal", "SIGTERM") == "SIGTERM"
    assert responder["depends_on"]["redis"]["condition"] == "service_healthy"
    redis_url = urlsplit(responder["environment"]["REDIS_URL"])
    assert redis_url.hostname in compose["services"] and redis_url.port == 6379
    assert ":latest" not in responder["image"] and ":" in responder["image"]


def test_secrets_are_passed_through_never_written(compose: dict[str, Any]) -> None:
    known = known_env_names()
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        assert isinstance(env, dict), f"{name}: environment as a mapping"
        assert set(env) <= known, (name, set(env) - known)
        for key, value in env.items():
            if key in SECRET_NAMES or any(w in key for w in ("KEY", "TOKEN", "SECRET")):
                assert value is None, f"{name}: {key} must pass through from the environment"
    responder_env = compose["services"]["responder"]["environment"]
    assert {"OPENAI_API_KEY", "TWILIO_AUTH_TOKEN", "OPENAI_WEBHOOK_SECRET"} <= set(responder_env)


def test_redis_persists_with_aof_from_the_mounted_conf(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"].split(":")[0] == "redis" and redis["image"].split(":")[1].startswith("7")
    mounts = dict(v.split(":")[:2] for v in redis["volumes"])
    conf_source = next(src for src, dst in mounts.items() if dst == redis["command"][1])
    conf = (DEPLOY / conf_source).resolve()
    assert conf == DEPLOY / "redis.conf"
    lines = [" ".join(line.split()) for line in conf.read_text(encoding="utf-8").splitlines()]
    assert "appendonly yes" in lines
    data_dir = redis["command"][redis["command"].index("--dir") + 1]
    named = next(src for src, dst in mounts.items() if dst == data_dir)
    assert named in compose["volumes"], "the AOF lives on a named volume"
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_split_profile_runs_the_supervisor_as_its_own_service(compose: dict[str, Any]) -> None:
    supervisor = compose["services"]["supervisor"]
    assert supervisor["profiles"] == ["split"]
    command = supervisor["command"]
    assert command[:2] == ["supervisor", "serve"]
    port = int(command[command.index("--port") + 1])
    assert str(port) in supervisor["expose"]
    assert f"127.0.0.1:{port}/healthz" in " ".join(supervisor["healthcheck"]["test"])
    assert supervisor["build"] == compose["services"]["responder"]["build"]
    # the documented settings point the responder at this service with a shared token
    example = _env_file(DEPLOY / ".env.example")
    url = urlsplit(example["RESPONDER_SUPERVISOR_URL"])
    assert (url.hostname, url.port) == ("supervisor", port)
    assert example["COMPOSE_PROFILES"] == "split"
    for service in ("responder", "supervisor"):
        assert compose["services"][service]["environment"]["RESPONDER_SUPERVISOR_TOKEN"] is None
    assert "RESPONDER_SUPERVISOR_URL" in compose["services"]["responder"]["environment"]
    assert "RESPONDER_SUPERVISOR_URL" not in supervisor["environment"]


def _env_file(path: Path) -> dict[str, str]:
    """The commented-out examples of an .env.example file, KEY=value."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        body = line.lstrip("# ").strip()
        key, sep, value = body.partition("=")
        if sep and key.isupper() and " " not in key:
            values[key] = value
    return values
