"""User-token keys rotate without downtime: a real cluster accepts the previous key's tokens.

The cluster's current key has id ``2025``; the key of id ``2024`` is still listed in
``keys.user_token_previous``. Tokens must also carry the configured audience and issuer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Iterator
from typing import Final

import aiohttp
import jwt
import pytest

from geodrop.config import KeysConfig, load_config
from geodrop.protocol.usertokens import mint_token
from support.cli_process import cli_environment, geodrop, run
from support.cluster import Cluster, client_address, running_cluster, user_token
from support.http import session_from
from support.transfer_checks import expect_error, patch, unique_user

OLD_KEY: Final = "test-user-token-key-of-last-year-0123456789"
RETIRED_KEY: Final = "test-user-token-key-of-two-years-ago-012345"
AUDIENCE: Final = "geodrop-test"
ISSUER: Final = "https://login.test/"
KEYS_TOML: Final = (
    f'user_token_kid = "2025"\ntoken_audience = "{AUDIENCE}"\ntoken_issuer = "{ISSUER}"\n'
    f'[keys.user_token_previous]\n2024 = "{OLD_KEY}"\n'
)
NORTH: Final = client_address("north", "telecom")
SOUTH: Final = client_address("south", "unicom")


@pytest.fixture(scope="module")
def rotated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("rotated"), keys_toml=KEYS_TOML) as running:
        yield running


def current_keys(cluster: Cluster) -> KeysConfig:
    return load_config(cluster.config_path).keys


def keys_before_rotation(cluster: Cluster) -> KeysConfig:
    """The keys as they were while ``2024`` was the current key."""
    return dataclasses.replace(
        current_keys(cluster), user_token=OLD_KEY, user_token_kid="2024", user_token_previous={}
    )


async def test_a_token_of_the_previous_key_is_accepted_by_directory_and_file_servers(
    rotated: Cluster,
) -> None:
    old = keys_before_rotation(rotated)
    receiver = unique_user("bob")
    alice_token = mint_token(old, "alice", now=time.time(), lifetime_seconds=600)
    bob_token = mint_token(old, receiver, now=time.time(), lifetime_seconds=600)
    assert jwt.get_unverified_header(alice_token)["kid"] == "2024"
    data = b"minted before the rotation"

    async with session_from(NORTH, alice_token) as alice:  # file server north
        answer = await alice.post(
            rotated.access_url("north") + "/v1/uploads",
            json={
                "name": "old.txt",
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "receivers": [receiver],
            },
        )
        assert answer.status == 201, await answer.text()
        created = await answer.json()
    assert (await patch(created["upload_url"], data, 0)).status == 204

    async with session_from(SOUTH, bob_token) as bob:
        inbox = await bob.get(rotated.directory_url + "/v1/inbox", params={"wait": "10"})
        assert inbox.status == 200, await inbox.text()  # the directory
        assert [e["file_id"] for e in (await inbox.json())["entries"]] == [created["file_id"]]
        answer = await bob.post(  # file server south, which asks north
            rotated.access_url("south") + "/v1/downloads", json={"file_id": created["file_id"]}
        )
        assert answer.status == 200, await answer.text()
        blob = await bob.get((await answer.json())["url"])
        assert await blob.read() == data


def _forged(key: str, claims: dict[str, object], kid: str | None) -> str:
    headers = None if kid is None else {"kid": kid}
    return jwt.encode(claims, key, algorithm="HS256", headers=headers)


@pytest.mark.parametrize(
    "case",
    [
        "retired kid",
        "old key without kid",
        "old key under the current kid",
        "no audience",
        "other issuer",
        "unconfigured token",
    ],
)
async def test_tokens_outside_the_configured_keys_are_refused_everywhere(
    rotated: Cluster, case: str
) -> None:
    now = int(time.time())
    claims: dict[str, object] = {"sub": "alice", "exp": now + 600, "aud": AUDIENCE, "iss": ISSUER}
    current = current_keys(rotated).user_token
    without_audience = {name: value for name, value in claims.items() if name != "aud"}
    token = {
        "retired kid": _forged(RETIRED_KEY, claims, "2023"),
        "old key without kid": _forged(OLD_KEY, claims, None),
        "old key under the current kid": _forged(OLD_KEY, claims, "2025"),
        "no audience": _forged(current, without_audience, "2025"),
        "other issuer": _forged(current, {**claims, "iss": "https://evil.test/"}, "2025"),
        # The plain test clusters' token: current key, but no aud/iss.
        "unconfigured token": user_token("alice"),
    }[case]
    async with session_from(NORTH, token) as session:
        await _expect_unauthorized(await session.get(rotated.directory_url + "/v1/inbox"))
        await _expect_unauthorized(
            await session.post(
                rotated.access_url("north") + "/v1/uploads",
                json={"name": "x", "size": 1, "receivers": ["bob"]},
            )
        )


async def _expect_unauthorized(answer: aiohttp.ClientResponse) -> None:
    await expect_error(answer, 401, "unauthorized")


async def test_geodrop_token_mints_with_the_current_kid_audience_and_issuer(
    rotated: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    env = cli_environment(tmp_path_factory.mktemp("home"))
    minted = await run(geodrop("token", "carol", "--config", str(rotated.config_path)), env)
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    assert jwt.get_unverified_header(token)["kid"] == "2025"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["aud"], claims["iss"]) == (AUDIENCE, ISSUER)
    async with session_from(NORTH, token) as session:
        answer = await session.get(rotated.directory_url + "/v1/inbox")
        assert answer.status == 200, await answer.text()
