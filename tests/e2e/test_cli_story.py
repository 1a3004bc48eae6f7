"""The ``geodrop`` command, run as users run it, through the whole story across regions.

Alice, a north/telecom user, sends a file to Bob, a south/unicom user: ``token``,
``send``, ``inbox``, ``receive``, ``status``, each a subprocess with no terminal
attached, so progress comes as plain lines on stderr and results on stdout. Bob's
bytes come straight from north's unicom link (DESIGN.md §2); south relays only the
address. Then the exit codes a script relies on (README, ``geodrop.cli.exitcodes``).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from geodrop.cli import exitcodes
from support.cli_process import (
    CliUser,
    cli_environment,
    exit_status,
    geodrop,
    minted_token,
    read_line_starting,
    run,
    started,
)
from support.cluster import Cluster, client_address, free_port, user_token
from support.e2e_flows import MIB, link_reports, sha256_of, wait_until_idle, write_random_file
from support.http import session_from
from support.transfer_checks import unique_user

pytestmark = pytest.mark.e2e

# Several 1 MiB chunks and a short last one, so progress has steps to report.
SIZE = 5 * MIB + 12345
WAIT_SECONDS = 15.0
UNKNOWN_FILE_ID = "north." + "a" * 26  # well formed; nobody issued it


async def user_at(
    cluster: Cluster, tmp_path: Path, name: str, region: str, carrier: str
) -> CliUser:
    """A user whose token comes from ``geodrop token NAME --config FILE``."""
    home = tmp_path / f"home-{name}"
    token = await minted_token(cluster, name, home)
    return CliUser(cluster, home, token, client_address(region, carrier))


async def bytes_sent_by_link(cluster: Cluster, region: str) -> dict[str, int]:
    """What each link of ``region`` has sent since it started, once no transfer is running."""
    async with session_from(client_address("north", "mobile")) as session:
        await wait_until_idle(session, cluster.access_url(region))
        reports = await link_reports(session, cluster.access_url(region))
    return {name: int(report["bytes_sent"]) for name, report in reports.items()}


def progress_lines(stderr: str, phase: str) -> list[str]:
    """The plain progress lines of one phase; a terminal's bar would redraw with ``\\r``."""
    assert "\r" not in stderr, f"a live bar went to a pipe: {stderr!r}"
    return [line for line in stderr.splitlines() if line.startswith(f"{phase} ")]


async def inbox_entry(bob: CliUser, file_id: str) -> dict[str, Any]:
    """Bob's inbox entry for ``file_id``, from ``geodrop inbox --json``; entries arrive shortly
    after the upload completes, so this asks again for at most WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        listing = (await bob.run("inbox", "--json")).json()
        assert set(listing) == {"entries", "cursor"}, listing
        for entry in listing["entries"]:
            if entry["file_id"] == file_id:
                assert isinstance(entry, dict)
                return entry
        assert time.monotonic() < deadline, f"{file_id} not in the inbox: {listing}"
        await asyncio.sleep(0.2)


async def delivery_to(alice: CliUser, file_id: str, receiver: str) -> dict[str, Any]:
    """``geodrop status --json`` as the sender, once ``receiver``'s delivery is recorded."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        state = (await alice.run("status", file_id, "--json")).json()
        deliveries = {d["user"]: d for d in state["receivers"]}
        assert set(deliveries) == {receiver}, state
        if deliveries[receiver]["received_at"] is not None:
            return state
        assert time.monotonic() < deadline, f"no receipt recorded: {state}"
        await asyncio.sleep(0.2)


async def test_cli_story(cluster: Cluster, tmp_path: Path) -> None:
    original = await asyncio.to_thread(write_random_file, tmp_path / "holiday.mp4", SIZE)
    alice = await user_at(cluster, tmp_path, "alice", "north", "telecom")
    bob = await user_at(cluster, tmp_path, "bob", "south", "unicom")

    # Alice sends from the north, on China Telecom: north keeps it, on its telecom link.
    sending = await alice.run("send", str(original.path), "--to", "bob", "--json")
    sent = sending.json()
    assert sent["name"] == "holiday.mp4"
    assert (sent["size"], sent["sha256"]) == (original.size, original.sha256)
    assert (sent["region"], sent["link"], sent["resumed_from"]) == ("north", "telecom", 0)
    assert urlsplit(sent["upload_url"]).hostname == cluster.link_host("north", "telecom")
    file_id = sent["file_id"]
    assert file_id.startswith("north.")
    uploaded = progress_lines(sending.stderr, "upload")
    assert uploaded, sending.stderr
    assert uploaded[-1].startswith(f"upload 100% {SIZE / 1e6:.1f} MB/{SIZE / 1e6:.1f} MB "), (
        uploaded
    )
    assert progress_lines(sending.stderr, "hashing")[-1].startswith("hashing 100% ")
    assert alice.resume_records == [], "a finished send left its resume record behind"

    # Bob, in the south on China Unicom, finds it in his inbox.
    entry = await inbox_entry(bob, file_id)
    assert entry["sender"] == "alice"
    assert (entry["name"], entry["size"], entry["sha256"]) == (
        "holiday.mp4",
        original.size,
        original.sha256,
    )
    assert entry["region"] == "north"

    # He receives it through his own region, south, from north's unicom link.
    north_before = await bytes_sent_by_link(cluster, "north")
    south_before = await bytes_sent_by_link(cluster, "south")
    target = tmp_path / "received.mp4"
    receiving = await bob.run("receive", file_id, "-o", str(target), "--json")
    got = receiving.json()
    assert await asyncio.to_thread(sha256_of, target) == original.sha256
    assert (got["sha256"], got["size"], got["resumed_from"]) == (original.sha256, SIZE, 0)
    assert Path(got["path"]) == target
    assert not target.with_name(target.name + ".part").exists()
    assert (got["region"], got["link"]) == ("north", "unicom")
    url = urlsplit(got["url"])
    assert (url.hostname, url.port) == (cluster.link_host("north", "unicom"), cluster.port)
    assert progress_lines(receiving.stderr, "download")[-1].startswith("download 100% ")
    # The server's side of it: north's unicom link sent the file, once; south sent nothing.
    north_after = await bytes_sent_by_link(cluster, "north")
    assert {name: north_after[name] - north_before[name] for name in north_after} == {
        "telecom": 0,
        "unicom": SIZE,
        "mobile": 0,
    }
    assert await bytes_sent_by_link(cluster, "south") == south_before

    # Alice, the sender, sees that Bob has it.
    state = await delivery_to(alice, file_id, "bob")
    assert (state["file_id"], state["state"], state["offset"]) == (file_id, "complete", SIZE)
    assert state["sender"] == "alice"
    (delivery,) = state["receivers"]
    assert delivery["announced"] is True
    assert delivery["received_at"] >= entry["created_at"]


async def test_inbox_watch_prints_a_line_per_new_file(cluster: Cluster, tmp_path: Path) -> None:
    receiver = unique_user("carol")
    watcher = CliUser(
        cluster, tmp_path / "home-watcher", user_token(receiver), client_address("east", "mobile")
    )
    alice = CliUser(
        cluster, tmp_path / "home-alice", user_token("alice"), client_address("north", "telecom")
    )
    note = tmp_path / "note.txt"
    note.write_bytes(b"see you at the station\n")
    async with started(watcher.command("inbox", "--watch", "--json"), watcher.env) as watching:
        sent = (await alice.run("send", str(note), "--to", receiver, "--json")).json()
        line = await read_line_starting(watching.stdout, "{", WAIT_SECONDS)
        assert watching.returncode is None, "the watch ended by itself"
        # Ctrl-C ends the watch with the documented status.
        watching.send_signal(signal.SIGINT)
        assert await exit_status(watching, 10) == exitcodes.INTERRUPTED
    entry = json.loads(line)
    assert entry["file_id"] == sent["file_id"]
    assert (entry["sender"], entry["name"], entry["size"]) == ("alice", "note.txt", 23)
    assert entry["sha256"] == sent["sha256"]


# -- exit codes -----------------------------------------------------------------------


async def test_bad_or_missing_token_exits_3(cluster: Cluster, tmp_path: Path) -> None:
    bob = CliUser(cluster, tmp_path / "home", user_token("bob"), client_address("south", "unicom"))
    forged = user_token("bob")[:-4] + "AAAA"
    refused = await bob.run("inbox", "--json", "--token", forged)
    assert refused.returncode == exitcodes.AUTH, refused
    assert refused.stdout == ""
    assert refused.stderr.startswith("geodrop: unauthorized: "), refused.stderr

    env = cli_environment(tmp_path / "home", GEODROP_DIRECTORY=cluster.directory_url)
    no_token = await run(geodrop("inbox", "--json"), env)
    assert no_token.returncode == exitcodes.AUTH, no_token
    assert "token" in no_token.stderr


async def test_unknown_file_exits_4(cluster: Cluster, tmp_path: Path) -> None:
    bob = CliUser(cluster, tmp_path / "home", user_token("bob"), client_address("south", "unicom"))
    target = tmp_path / "nothing.bin"
    missing = await bob.run("receive", UNKNOWN_FILE_ID, "-o", str(target), "--json")
    assert missing.returncode == exitcodes.NOT_FOUND, missing
    assert missing.stderr.startswith("geodrop: not found: "), missing.stderr
    assert not target.exists()
    assert not target.with_name(target.name + ".part").exists()
    unknown_status = await bob.run("status", UNKNOWN_FILE_ID, "--json")
    assert unknown_status.returncode == exitcodes.NOT_FOUND, unknown_status


async def test_unreachable_directory_exits_5(cluster: Cluster, tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port(['127.0.0.1'])}"  # nothing listens there
    bob = CliUser(cluster, tmp_path / "home", user_token("bob"), client_address("south", "unicom"))
    started_at = time.monotonic()
    result = await bob.run("inbox", "--json", "--directory", nobody, "--retries", "1")
    elapsed = time.monotonic() - started_at
    assert result.returncode == exitcodes.NETWORK, result
    assert result.stdout == ""
    assert result.stderr.startswith("geodrop: network: cannot reach "), result.stderr
    # One retry after the first backoff step (0.5 s), then it gives up.
    assert 0.5 <= elapsed < 10, elapsed


async def test_send_without_receivers_is_a_usage_error(cluster: Cluster, tmp_path: Path) -> None:
    alice = CliUser(
        cluster, tmp_path / "home", user_token("alice"), client_address("north", "telecom")
    )
    file = tmp_path / "lonely.txt"
    file.write_bytes(b"for nobody\n")
    result = await alice.run("send", str(file), "--json")
    assert result.returncode == exitcodes.USAGE, result
    assert result.stdout == ""
    assert "--to" in result.stderr
    assert alice.resume_records == []
