"""Tests of geodrop.web.static: the web client's files, answered from memory with ETags."""

from __future__ import annotations

import hashlib
from importlib import resources

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from geodrop.errors import NotFound
from geodrop.web.static import StaticFiles

HEADERS = {"Content-Security-Policy": "default-src 'none'"}


@pytest.fixture(scope="module")
def files() -> StaticFiles:
    return StaticFiles("geodrop.directory", "static", HEADERS)


def request(if_none_match: str | None = None) -> web.Request:
    headers = {"If-None-Match": if_none_match} if if_none_match is not None else {}
    return make_mocked_request("GET", "/app/x", headers=headers)


def test_the_folder_s_own_files_are_loaded_and_sub_folders_are_not(files: StaticFiles) -> None:
    folder = resources.files("geodrop.directory").joinpath("static")
    assert {"index.html", "app.css", "main.js"} <= set(files.files)
    for name, found in files.files.items():
        assert "/" not in name
        assert found.body == folder.joinpath(name).read_bytes()


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("index.html", "text/html; charset=utf-8"),
        ("main.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
    ],
)
def test_a_file_is_answered_with_its_type_validator_and_headers(
    files: StaticFiles, name: str, content_type: str
) -> None:
    answer = files.answer(request(), name)
    assert answer.status == 200
    assert answer.headers["Content-Type"] == content_type
    assert answer.body == files.files[name].body
    etag = answer.headers["ETag"]
    digest = hashlib.sha256(files.files[name].body).hexdigest()
    assert etag == f'"{digest[:32]}"'
    assert answer.headers["Cache-Control"] == "no-cache"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Content-Security-Policy"] == HEADERS["Content-Security-Policy"]


@pytest.mark.parametrize(
    "template", ["{etag}", "W/{etag}", '"other", {etag}', "*", '"x",W/{etag} ']
)
def test_a_current_copy_gets_304_without_a_body(files: StaticFiles, template: str) -> None:
    etag = files.files["main.js"].etag
    answer = files.answer(request(template.format(etag=etag)), "main.js")
    assert answer.status == 304
    assert answer.body is None
    assert answer.headers["ETag"] == etag


@pytest.mark.parametrize("value", ['"stale"', "", "W/", '"' + "0" * 32 + '"'])
def test_a_stale_copy_gets_the_file(files: StaticFiles, value: str) -> None:
    assert files.answer(request(value), "main.js").status == 200


@pytest.mark.parametrize("name", ["nothing.js", "", "status", "../app.py", "index.HTML"])
def test_anything_else_is_not_found(files: StaticFiles, name: str) -> None:
    with pytest.raises(NotFound):
        files.answer(request(), name)
