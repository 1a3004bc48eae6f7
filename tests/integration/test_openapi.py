"""The OpenAPI descriptions: served by each server, valid, complete, and true of the live servers.

schemathesis generates requests from each description (valid ones and invalid ones) and
sends them to real directory and file-server processes; every answer must be documented
(status, content type, headers, body schema) and none may be a server error.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import validate
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.result import Err
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from geodrop.config import load_config
from geodrop.directory.app import build_app as build_directory_app
from geodrop.directory.app import build_directory
from geodrop.fileserver.app import build_app as build_file_server_app
from geodrop.fileserver.app import build_file_server
from geodrop.web.openapi import load_spec
from support.cluster import Cluster, user_token
from support.region_state import UNTHROTTLED, set_limits
from support.transfer_checks import negotiate_upload, signed_blob_url, upload_file

PACKAGES: Final = {"directory": "geodrop.directory", "north": "geodrop.fileserver"}
HTTP_METHODS: Final = frozenset(
    {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
)

# Each operation gets at most this many generated requests at each target in each generation
# mode (positive and negative): about 2,000 requests, well under a minute for both servers.
MAX_EXAMPLES: Final = 50
MIN_CASES: Final = 100
FUZZ_BUDGET_SECONDS: Final = 40.0
# Long polls are real waits (up to 60 s): the fuzzer's hold this one. Generated, even a
# schema-violating value the server takes (negative mode drew 5.0 and 2.00001 against a
# maximum lowered to 0.2) waits that long, and one past the client's 10 s timeout fails
# the case and makes Hypothesis shrink it, wait after wait. Garbage waits are refused in
# test_errors.py (test_inbox_rejects_garbage_cursor_and_wait).
FUZZ_WAIT_SECONDS: Final = "0.01"
FUZZER: Final = "fuzzer"
RECEIVER: Final = "fuzz-receiver"

CHECKS: Final[list[CheckFunction]] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# tus bodies are plain bytes under tus's own media type.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")

# Never fuzzed: peer endpoints need an HMAC signature over the exact request, and the
# event stream never ends by itself.
STREAMING: Final = frozenset({("GET", "/v1/inbox/events")})
ON_LINKS: Final = ("/tus", "/blobs/")

Operation = APIOperation[Any, Any, Any, Any]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A whole cluster without request rate limits: the fuzzer sends thousands of requests a
    minute as one user from one address, past the defaults (test_limits.py tests those)."""
    fuzzed = Cluster(tmp_path_factory.mktemp("openapi"))
    set_limits(fuzzed, **UNTHROTTLED)
    try:
        fuzzed.start_all()
        yield fuzzed
    finally:
        fuzzed.stop_all()


def _base_url(cluster: Cluster, role: str) -> str:
    return cluster.directory_url if role == "directory" else cluster.access_url(role)


# -- (a) served and valid -----------------------------------------------------------------


@pytest.mark.parametrize("role", list(PACKAGES))
async def test_each_server_serves_its_packaged_description(cluster: Cluster, role: str) -> None:
    packaged = load_spec(PACKAGES[role])
    base = _base_url(cluster, role)
    async with aiohttp.ClientSession() as session:
        answer = await session.get(base + "/openapi.json")
        assert answer.status == 200, await answer.text()
        assert answer.content_type == "application/json"
        served = await answer.json()
    assert served.pop("servers") == [{"url": base}]
    assert served == packaged

    validate(packaged)  # the OpenAPI 3.1 meta-schema, every $ref resolved
    assert packaged["openapi"].startswith("3.1.")
    assert _api_operations(packaged)


def _api_operations(spec: dict[str, Any]) -> list[Operation]:
    """The operations of ``spec`` as schemathesis reads them.

    Raises:
        InvalidSchema: schemathesis cannot use an operation.
    """
    operations = []
    for result in schemathesis.openapi.from_dict(spec).get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operations.append(result.ok())
    return operations


def test_every_error_answer_uses_the_error_schema() -> None:
    for package in PACKAGES.values():
        spec = load_spec(package)
        for path, method, operation in _operations(spec):
            for status, response in operation["responses"].items():
                if int(status) < 400 or method == "head":
                    continue
                resolved = _resolve(spec, response)
                schema = resolved["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, status)


def test_peer_operations_are_marked_and_signed() -> None:
    for package in PACKAGES.values():
        for path, method, operation in _operations(load_spec(package)):
            peer = path.startswith("/v1/peer/")
            assert operation.get("x-geodrop-peer", False) is peer, (path, method)
            if peer:
                assert operation["security"] == [{"peerSignature": []}], (path, method)


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


# -- (b) no drift between routes and description --------------------------------------


def _routes(app: Any) -> set[tuple[str, str]]:
    """``(METHOD, path template)`` of every route, HEAD routes implied by GET included."""
    return {(route.method, route.resource.canonical) for route in app.router.routes()}


def _implied_heads(app: Any) -> set[tuple[str, str]]:
    """HEAD routes aiohttp adds beside each GET route (same handler): described or not."""
    gets = {
        (route.resource.canonical, route.handler)
        for route in app.router.routes()
        if route.method == "GET"
    }
    return {
        ("HEAD", route.resource.canonical)
        for route in app.router.routes()
        if route.method == "HEAD" and (route.resource.canonical, route.handler) in gets
    }


def _described(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, method, _ in _operations(spec)}


async def test_description_and_routes_match_exactly(tmp_path: Path) -> None:
    config = load_config(Cluster(tmp_path).config_path)
    directory = build_directory(config)
    file_server = build_file_server(config, "north")
    try:
        apps = {
            "geodrop.directory": build_directory_app(directory),
            "geodrop.fileserver": build_file_server_app(file_server),
        }
        for package, app in apps.items():
            routes, implied = _routes(app), _implied_heads(app)
            described = _described(load_spec(package))
            assert described - routes == set(), f"{package}: described but not served"
            assert routes - implied - described == set(), f"{package}: served but not described"
    finally:
        await directory.inboxes.store.close()
        directory.locator.close()
        await file_server.transfers.close()
        await file_server.store.close()
        file_server.locator.close()


# -- (c) schemathesis against the live servers ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Where one operation is fuzzed, and the inputs held fixed there (a valid signed URL's)."""

    base_url: str
    path_parameters: dict[str, str] | None = None
    query: dict[str, str] | None = None
    headers: dict[str, str] | None = None
    max_examples: int = MAX_EXAMPLES


def _skipped(operation: Operation) -> bool:
    return bool(operation.definition.raw.get("x-geodrop-peer")) or (
        (operation.method.upper(), operation.path) in STREAMING
    )


def _modes(operation: Operation) -> list[GenerationMode]:
    """Positive cases, and negative ones where there is an input to get wrong."""
    if any(operation.iter_parameters()) or len(operation.body):
        return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    return [GenerationMode.POSITIVE]


def _fuzz_operation(
    operation: Operation,
    mode: GenerationMode,
    target: Target,
    headers: dict[str, str],
    session: requests.Session,
    statuses: Counter[int],
) -> None:
    strategy = operation.as_strategy(
        generation_mode=mode,
        path_parameters=target.path_parameters,
        query=target.query,
        headers=target.headers,
    )

    @settings(
        max_examples=target.max_examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    @given(case=strategy)
    def run(case: Case[Operation]) -> None:
        response = case.call_and_validate(
            base_url=target.base_url, session=session, headers=headers, checks=CHECKS, timeout=10
        )
        statuses[response.status_code] += 1

    run()


def _fuzz(
    spec: dict[str, Any], targets: Callable[[Operation], list[Target]], token: str
) -> tuple[list[str], Counter[int]]:
    """Fuzz every operation of ``spec`` at its targets; the failures, and the statuses seen."""
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    with requests.Session() as session:
        for operation in _api_operations(spec):
            if _skipped(operation):
                continue
            for target in targets(operation):
                for mode in _modes(operation):
                    try:
                        _fuzz_operation(operation, mode, target, headers, session, statuses)
                    except Unsatisfiable:
                        # Where every other input is held fixed, there may be nothing left
                        # to get wrong: no request was sent, nothing to check.
                        if mode is not GenerationMode.NEGATIVE:
                            raise
                    except (Exception, FailureGroup) as exc:  # report every failing operation
                        failures.append(f"{operation.label} at {target} [{mode.value}]: {exc}")
    return failures, statuses


def _check_fuzzing(role: str, failures: list[str], statuses: Counter[int], started: float) -> None:
    elapsed = time.monotonic() - started
    assert not failures, "\n\n".join(failures)
    # The servers were really exercised: many answers, successes among them.
    assert statuses.total() >= MIN_CASES, statuses
    assert any(200 <= status < 300 for status in statuses), statuses
    assert elapsed < FUZZ_BUDGET_SECONDS, f"{role}: fuzzing took {elapsed:.1f} s"


async def test_live_directory_keeps_to_its_description(cluster: Cluster) -> None:
    started = time.monotonic()

    def targets(operation: Operation) -> list[Target]:
        if any(parameter.name == "wait" for parameter in operation.iter_parameters()):
            return [Target(cluster.directory_url, query={"wait": FUZZ_WAIT_SECONDS})]
        return [Target(cluster.directory_url)]

    failures, statuses = await asyncio.to_thread(
        _fuzz, load_spec(PACKAGES["directory"]), targets, user_token(FUZZER)
    )
    _check_fuzzing("directory", failures, statuses, started)


def _signed_target(url: str, id_parameter: str) -> Target:
    """The target of a signed transfer URL: its link, its id and its signature held fixed."""
    parts = urlsplit(url)
    base, _, transfer_id = f"{parts.scheme}://{parts.netloc}{parts.path}".rpartition("/")
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    return Target(base.rsplit("/", 1)[0], {id_parameter: transfer_id}, query)


async def test_live_file_server_keeps_to_its_description(cluster: Cluster) -> None:
    # Valid signed URLs too, so that fuzzing reaches past the signature check: a
    # complete file for ranges and preconditions, and unfinished uploads for tus.
    data = bytes(range(8))
    done = await upload_file(cluster, FUZZER, [RECEIVER], data)
    blob = _signed_target(signed_blob_url(cluster, done.file_id, FUZZER), "file_id")
    # Preconditions that hold, so the generated Range decides the answer.
    etag = f'"{hashlib.sha256(data).hexdigest()}"'
    ranges = replace(
        blob,
        headers={"If-Match": etag, "If-None-Match": '"other"', "If-Range": etag},
        max_examples=2 * MAX_EXAMPLES,
    )
    uploads = {
        method: await negotiate_upload(cluster, FUZZER, [RECEIVER], 64)
        for method in ("HEAD", "PATCH", "DELETE")
    }

    def targets(operation: Operation) -> list[Target]:
        if not operation.path.startswith(ON_LINKS):
            return [Target(cluster.access_url("north"))]
        # Transfers are refused on the access address; fuzz them where clients send them.
        found = [Target(cluster.link_url("north", "telecom"))]
        if operation.path == "/blobs/{file_id}":
            found.append(blob)
            if operation.method.upper() == "GET":  # HEAD answers no range (RFC 9110 §14.2)
                found.append(ranges)
        elif operation.path == "/tus/{upload_id}" and operation.method.upper() in uploads:
            found.append(_signed_target(uploads[operation.method.upper()].url, "upload_id"))
        return found

    started = time.monotonic()
    failures, statuses = await asyncio.to_thread(
        _fuzz, load_spec(PACKAGES["north"]), targets, user_token(FUZZER)
    )
    _check_fuzzing("north", failures, statuses, started)
    assert {206, 412, 416} <= set(statuses), statuses  # ranges and preconditions were tried
