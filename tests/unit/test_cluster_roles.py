"""Tests of geodrop.cluster.role_commands: one process per directory instance and access unit."""

from __future__ import annotations

import tomllib
from pathlib import Path

from geodrop.cluster import role_commands
from geodrop.config import parse_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dev-cluster.toml"


def test_one_process_per_role_by_default() -> None:
    document = tomllib.loads(EXAMPLE.read_text())
    config = parse_config(document, EXAMPLE.parent)

    names = [name for name, _ in role_commands(config, EXAMPLE)]

    assert names == ["directory", "fileserver north", "fileserver east", "fileserver south"]


def test_instances_and_access_units_each_get_a_process() -> None:
    document = tomllib.loads(EXAMPLE.read_text())
    del document["directory"]["database"]
    document["directory"]["metadata"] = {"kind": "postgres", "dsn": "postgresql://g@db/dir"}
    document["directory"]["instances"] = 2
    north = document["regions"][0]
    north["storage"] = {
        "kind": "s3",
        "endpoint_url": "http://127.0.0.1:8333",
        "bucket": "north",
        "access_key": "k",
        "secret_key": "s",
    }
    north["metadata"] = {"kind": "postgres", "dsn": "postgresql://g@db/north"}
    north["access_units"] = 3
    config = parse_config(document, EXAMPLE.parent)

    commands = dict(role_commands(config, EXAMPLE))

    assert list(commands) == [
        "directory",
        "directory#2",
        "fileserver north",
        "fileserver north#2",
        "fileserver north#3",
        "fileserver east",
        "fileserver south",
    ]
    assert commands["fileserver north#3"][-3:] == ["fileserver", "--region", "north"]
    assert commands["directory#2"][-1] == "directory"
