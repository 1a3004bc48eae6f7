"""The docker-compose deployment (which cannot run here) stays consistent with the config."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from geodrop.config import (
    PostgresMetadataConfig,
    S3StorageConfig,
    SqliteMetadataConfig,
    load_config,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
CONFIG = ROOT / "examples" / "compose" / "cluster.toml"


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def _geodrop_roles(compose: dict[str, Any]) -> Counter[str]:
    """How many services run each geodrop role ("directory", "fileserver north", …)."""
    roles: Counter[str] = Counter()
    for service in compose["services"].values():
        if service.get("image") != "geodrop:latest":
            continue
        command: list[str] = service["command"]
        assert command[:2] == ["--config", "/etc/geodrop/cluster.toml"]
        role = command[2:]
        roles["directory" if role == ["directory"] else f"fileserver {role[-1]}"] += 1
    return roles


def test_the_config_the_services_mount_is_valid_and_scaled_out() -> None:
    config = load_config(CONFIG)
    north, south = config.region("north"), config.region("south")
    assert isinstance(north.storage, S3StorageConfig)
    assert isinstance(north.metadata, PostgresMetadataConfig)
    assert north.access_units == 2
    assert isinstance(south.metadata, SqliteMetadataConfig)
    assert isinstance(config.directory.metadata, PostgresMetadataConfig)


def test_one_service_per_directory_instance_and_access_unit() -> None:
    config = load_config(CONFIG)
    expected = Counter({"directory": config.directory.instances})
    for region in config.regions:
        expected[f"fileserver {region.name}"] = region.access_units
    assert _geodrop_roles(_compose()) == expected


def test_backing_services_match_the_config() -> None:
    config = load_config(CONFIG)
    compose = _compose()
    north = config.region("north")
    assert isinstance(north.storage, S3StorageConfig)
    # SeaweedFS serves S3 on the endpoint's port, with the key geodrop is configured with.
    seaweed = compose["services"]["seaweedfs"]["command"]
    assert f"-s3.port={north.storage.endpoint_url.rsplit(':', 1)[1]}" in seaweed
    identities = json.loads((ROOT / "examples" / "compose" / "s3.json").read_text())
    credentials = identities["identities"][0]["credentials"][0]
    assert (credentials["accessKey"], credentials["secretKey"]) == (
        north.storage.access_key,
        north.storage.secret_key,
    )
    # Every PostgreSQL database geodrop connects to is created by the init script.
    init = (ROOT / "examples" / "compose" / "postgres-init.sql").read_text()
    for metadata in (north.metadata, config.directory.metadata):
        assert isinstance(metadata, PostgresMetadataConfig)
        database = metadata.dsn.rsplit("/", 1)[1]
        assert f"CREATE DATABASE {database} " in init
    # South's SQLite and blobs live on the volume mounted at their folder.
    south_volumes = compose["services"]["south"]["volumes"]
    assert "south-data:/var/lib/geodrop/south" in south_volumes


def test_the_image_carries_the_web_clients_npm_file_where_make_web_puts_it() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    build_web = (ROOT / "scripts" / "build-web.sh").read_text()
    assert "target=src/geodrop/directory/static" in build_web
    assert "./src/geodrop/directory/static/tus.min.js" in dockerfile
    assert "COPY web/package.json web/package-lock.json" in dockerfile
