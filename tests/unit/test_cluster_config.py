"""`cluster.yaml` is a config the Ray cluster launcher accepts: validated against the JSON schema that
Ray ships with its launcher (`ray/autoscaler/ray-schema.json`), and it installs loco from the lock file."""

import json
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_matches_the_ray_launcher_schema(schema, config):
    jsonschema.validate(config, schema)


def test_the_schema_check_catches_a_misspelt_key(schema, config):
    with pytest.raises(jsonschema.ValidationError, match="max_workerz"):
        jsonschema.validate({**config, "max_workerz": 3}, schema)


def test_every_node_type_is_declared_and_gpu_workers_have_gpus(config):
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    assert any(t["resources"].get("GPU", 0) >= 1 for t in types.values())


def test_nodes_install_loco_from_the_lock_file(config):
    assert any("uv sync --frozen" in command for command in config["setup_commands"])
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])


def test_every_node_runs_ray_from_locos_environment_with_token_authentication(config):
    starts = [*config["head_start_ray_commands"], *config["worker_start_ray_commands"]]
    for command in (c for c in starts if " start " in c):
        assert command.startswith("RAY_AUTH_MODE=token /home/ubuntu/loco/.venv/bin/ray start"), command
    assert config["file_mounts"].get("/home/ubuntu/.ray/auth_token") == "~/.ray/auth_token"
