"""HTTP endpoints of the inboxes: file servers add entries, receivers read and wait."""

from __future__ import annotations

import json
from typing import Final

from aiohttp import web

from geodrop.directory.context import DIRECTORY
from geodrop.directory.handlers import peer_region
from geodrop.directory.inbox import (
    MAX_ANNOUNCEMENTS,
    MAX_WAIT_SECONDS,
    entry_json,
    parse_entry,
    parse_file_reference,
)
from geodrop.errors import BadRequest
from geodrop.web.accesslog import count_body_bytes
from geodrop.web.auth import authenticated_peer, authenticated_user
from geodrop.web.jsonbody import parse_json_object

# A comment line this often keeps proxies from closing an idle event stream.
KEEPALIVE_SECONDS: Final = 15.0


async def add_inbox_entry(request: web.Request) -> web.Response:
    """``POST /v1/peer/inbox``: a file server announces a completed file to a receiver."""
    directory = request.app[DIRECTORY]
    peer, raw = await authenticated_peer(
        request, directory.config.keys.peer.encode(), directory.replay_guard
    )
    entry = parse_entry(parse_json_object(raw), directory.config.region_names)
    peer_region(directory, peer, entry.region)
    stored = await directory.inboxes.add(entry)
    return web.json_response(entry_json(stored), status=201)


async def add_inbox_entries(request: web.Request) -> web.Response:
    """``POST /v1/peer/inbox/entries``: a file server announces several completed files at
    once, ``{"entries": [announcement, ...]}``, all stored in one transaction or none."""
    directory = request.app[DIRECTORY]
    peer, raw = await authenticated_peer(
        request, directory.config.keys.peer.encode(), directory.replay_guard
    )
    announcements = parse_json_object(raw).get("entries")
    if not isinstance(announcements, list) or not announcements:
        raise BadRequest("entries: a non-empty list of announcements is required")
    if len(announcements) > MAX_ANNOUNCEMENTS:
        raise BadRequest(f"entries: at most {MAX_ANNOUNCEMENTS} announcements at once")
    entries = []
    for index, body in enumerate(announcements):
        if not isinstance(body, dict):
            raise BadRequest(f"entries[{index}]: an announcement object is required")
        try:
            entry = parse_entry(body, directory.config.region_names)
        except BadRequest as exc:
            raise BadRequest(f"entries[{index}]: {exc.message}") from None
        peer_region(directory, peer, entry.region)
        entries.append(entry)
    stored = await directory.inboxes.add_many(entries)
    return web.json_response({"entries": [entry_json(e) for e in stored]}, status=201)


async def remove_inbox_entries(request: web.Request) -> web.Response:
    """``POST /v1/peer/inbox/remove``: a file server withdraws every entry of a file it deleted.

    A file server may only remove files of its own region (403 otherwise); removing
    entries that are already gone is not an error, so the call can be retried.
    """
    directory = request.app[DIRECTORY]
    peer, raw = await authenticated_peer(
        request, directory.config.keys.peer.encode(), directory.replay_guard
    )
    file_id, region = parse_file_reference(parse_json_object(raw), directory.config.region_names)
    peer_region(directory, peer, region)
    await directory.inboxes.remove(file_id)
    return web.json_response({"file_id": file_id, "removed": True})


def _non_negative(request: web.Request, name: str, default: float) -> float:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"{name}: a number is required") from None
    if not value >= 0 or value > 1e12:
        raise BadRequest(f"{name}: must be a non-negative number")
    return value


async def inbox(request: web.Request) -> web.Response:
    """``GET /v1/inbox?after=CURSOR&wait=SECONDS``: the caller's entries, long-polling if asked."""
    directory = request.app[DIRECTORY]
    user = authenticated_user(request, directory.config.keys)
    after = int(_non_negative(request, "after", 0))
    wait = _non_negative(request, "wait", 0)
    entries = await directory.inboxes.wait_for_entries(user, after, wait)
    cursor = entries[-1].cursor if entries else after
    return web.json_response(
        {"user": user, "entries": [entry_json(e) for e in entries], "cursor": cursor}
    )


async def inbox_events(request: web.Request) -> web.StreamResponse:
    """``GET /v1/inbox/events``: server-sent events, one ``entry`` event per new inbox entry.

    Resumes after ``Last-Event-ID`` (or ``?after=``), so a reconnecting client misses nothing.
    """
    directory = request.app[DIRECTORY]
    user = authenticated_user(request, directory.config.keys)
    last_id = request.headers.get("Last-Event-ID")
    if last_id is not None and not last_id.isdigit():
        raise BadRequest("Last-Event-ID: a cursor is required")
    after = int(last_id) if last_id else int(_non_negative(request, "after", 0))
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    while not directory.inboxes.closing:
        entries = await directory.inboxes.wait_for_entries(
            user, after, min(KEEPALIVE_SECONDS, MAX_WAIT_SECONDS)
        )
        if not entries:
            await _write_event(request, response, b": keepalive\n\n")
            continue
        for entry in entries:
            data = json.dumps(entry_json(entry))
            event = f"id: {entry.cursor}\nevent: entry\ndata: {data}\n\n".encode()
            await _write_event(request, response, event)
            after = entry.cursor
    return response


async def _write_event(request: web.Request, response: web.StreamResponse, event: bytes) -> None:
    await response.write(event)
    count_body_bytes(request, len(event))
