"""The simulated network: namespaces, veth pairs, routes and rate limits (iproute2).

One namespace per role, all named ``gdsim-<pid>-<run>-<role>`` and deleted by
:meth:`Topology.destroy` (and, should a run die hard, by :func:`remove_leftovers` at the
start of the next one):

- ``core``: a router. The directory listens on its loopback (198.18.0.1).
- ``cli``: every client group's source address, each group on its own veth to the core
  (source-based routing picks the veth).
- ``r1`` … ``r3``: one per region file server: an access veth (unshaped) and one veth per
  carrier link (source-based routing sends each link's replies out of its own veth).

Rate limits (egress only, as the kernel shapes):

- per path class (client group ↔ link), both directions: an HTB class per link on the
  group's veth, u32-matched on the link address: on the client side (uploads, by
  destination) and on the core side (downloads, by source);
- per link capacity, both directions: a ``tbf`` on the link's veth, on the core side
  (uploads) and on the server side (downloads). Halving a link mid-run changes these.

GSO is switched off on every veth (``gso_max_segs 1``) so queues hold MTU-sized packets
and their limits mean what they say; the leaf queues are 100-packet FIFOs (``fq_codel``
and ``netem`` are not available on these machines).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from bench.simulation.model import (
    DIRECTORY_ADDRESS,
    TRANSIT_PREFIX,
    Deployment,
    LinkSpec,
    PathRates,
)

PREFIX: Final = "gdsim-"
LEAF_QUEUE_PACKETS: Final = 100
TBF_LATENCY: Final = "100ms"
HTB_QUANTUM: Final = 3028


class NetworkSetupError(RuntimeError):
    """An ``ip`` or ``tc`` command failed."""


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        raise NetworkSetupError(f"{name} not found: install iproute2")
    return path


def run_command(argv: Sequence[str], stdin: str | None = None) -> str:
    """Run one command; raise with its stderr if it fails."""
    done = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        shown = " ".join(argv) + (f" <<< {stdin[:400]!r}" if stdin else "")
        raise NetworkSetupError(f"{shown}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def ensure_tools() -> None:
    """Make sure ``ip`` and ``tc`` exist, installing iproute2 with apt-get if not."""
    if shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin") and shutil.which(
        "tc", path="/usr/sbin:/sbin:/usr/bin:/bin"
    ):
        return
    apt = shutil.which("apt-get")
    if apt is None:
        raise NetworkSetupError("ip/tc missing and no apt-get to install iproute2")
    run_command([apt, "update", "-qq"])
    run_command([apt, "install", "-y", "-qq", "iproute2"])


def namespaces() -> list[str]:
    out = run_command([tool("ip"), "-j", "netns", "list"]).strip()
    return [entry["name"] for entry in json.loads(out or "[]")]


def _kill_namespace_processes(ns: str) -> None:
    """End the processes a previous run of this bench left in ``ns`` (by pid)."""
    out = run_command([tool("ip"), "netns", "pids", ns])
    for text in out.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(text), signal.SIGKILL)


def owner_alive(ns: str) -> bool:
    """Whether the bench process that made ``ns`` (``gdsim-PID-…``) still runs elsewhere."""
    owner = ns.removeprefix(PREFIX).split("-", 1)[0]
    if not owner.isdigit() or int(owner) == os.getpid():
        return False
    try:
        os.kill(int(owner), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers() -> list[str]:
    """Delete the ``gdsim-*`` namespaces (and their processes) that dead runs left behind.

    A namespace whose owning bench process still runs belongs to a concurrent run and
    is left alone.
    """
    removed = []
    for ns in namespaces():
        if ns.startswith(PREFIX) and not owner_alive(ns):
            _kill_namespace_processes(ns)
            with contextlib.suppress(NetworkSetupError):  # gone meanwhile
                run_command([tool("ip"), "netns", "delete", ns])
            removed.append(ns)
    return removed


@dataclass
class _Veth:
    """One veth pair: ``outer`` in the core namespace, ``inner`` in ``ns``."""

    ns: str
    inner: str
    outer: str
    index: int

    @property
    def outer_address(self) -> str:
        return f"{TRANSIT_PREFIX}.{4 * self.index + 1}"

    @property
    def inner_address(self) -> str:
        return f"{TRANSIT_PREFIX}.{4 * self.index + 2}"


@dataclass
class Topology:
    """The namespaces of one deployment, built by :meth:`build`, removed by :meth:`destroy`."""

    run_id: str
    deployment: Deployment
    rates: PathRates
    created: list[str] = field(default_factory=list)
    _veths: list[_Veth] = field(default_factory=list)
    _capacity: dict[str, float | None] = field(default_factory=dict)

    # -- names ---------------------------------------------------------------------

    def ns(self, role: str) -> str:
        """``gdsim-PID-RUN-ROLE``: the owner's pid keeps concurrent runs apart."""
        return f"{PREFIX}{os.getpid()}-{self.run_id}-{role}"

    @property
    def core(self) -> str:
        return self.ns("core")

    @property
    def clients(self) -> str:
        return self.ns("cli")

    def server_ns(self, region: str) -> str:
        return self.ns(self.deployment.region(region).tag)

    def exec_prefix(self, ns: str) -> list[str]:
        """Prefix an argv with this to run it inside namespace ``ns``."""
        return [tool("ip"), "netns", "exec", ns]

    # -- building ------------------------------------------------------------------

    def build(self) -> None:
        """Create every namespace, link, address, route and rate limit."""
        ip = tool("ip")
        roles = [self.core, self.clients] + [self.ns(r.tag) for r in self.deployment.regions]
        for ns in roles:
            run_command([ip, "netns", "add", ns])
            self.created.append(ns)
        self._ip(self.core, ["link set lo up", f"addr add {DIRECTORY_ADDRESS}/32 dev lo"])
        self._sysctl(self.core, "net/ipv4/ip_forward", "1")
        self._build_clients()
        for region in self.deployment.regions:
            self._build_region(region.name)

    def _veth(self, ns: str, inner: str) -> _Veth:
        veth = _Veth(ns, inner, f"x-{inner}", len(self._veths))
        self._veths.append(veth)
        add = f"link add {veth.outer} netns {self.core} type veth peer name {veth.inner} netns {ns}"
        run_command([tool("ip"), *add.split()])
        for side_ns, dev, address in (
            (self.core, veth.outer, veth.outer_address),
            (ns, veth.inner, veth.inner_address),
        ):
            self._ip(
                side_ns,
                [
                    f"link set {dev} gso_max_segs 1",
                    f"addr add {address}/30 dev {dev}",
                    f"link set {dev} up",
                ],
            )
        return veth

    def _build_clients(self) -> None:
        ns = self.clients
        self._ip(ns, ["link set lo up"])
        for table, group in enumerate(self.deployment.groups, start=100):
            veth = self._veth(ns, group.tag)
            self._ip(
                ns,
                [
                    f"addr add {group.address}/32 dev lo",
                    f"rule add from {group.subnet} table {table}",
                    f"route add default via {veth.outer_address} dev {veth.inner} table {table}",
                ],
            )
            self._ip(self.core, [f"route add {group.subnet} via {veth.inner_address}"])
            links = self.deployment.links
            # Uploads leave the client side toward each link: shape by destination.
            self._path_classes(
                ns, veth.inner, "dst", [(link, self.rates.rate(group, link)) for link in links]
            )
            # Downloads leave the core toward the group: shape by source.
            self._path_classes(
                self.core,
                veth.outer,
                "src",
                [(link, self.rates.rate(group, link)) for link in links],
            )

    def _build_region(self, name: str) -> None:
        region = self.deployment.region(name)
        ns = self.ns(region.tag)
        self._ip(ns, ["link set lo up", f"addr add {region.access_address}/32 dev lo"])
        access = self._veth(ns, f"{region.tag}a")
        self._ip(
            ns,
            [
                f"route add default via {access.outer_address} dev {access.inner} "
                f"src {region.access_address}"
            ],
        )
        self._ip(self.core, [f"route add {region.access_address}/32 via {access.inner_address}"])
        for table, link in enumerate(region.links, start=100):
            veth = self._veth(ns, link.tag)
            self._ip(
                ns,
                [
                    f"addr add {link.address}/32 dev lo",
                    f"rule add from {link.address}/32 table {table}",
                    f"route add default via {veth.outer_address} dev {veth.inner} table {table}",
                ],
            )
            self._ip(self.core, [f"route add {link.address}/32 via {veth.inner_address}"])
            self._capacity[link.key] = link.capacity_mbps
            if link.capacity_mbps is not None:
                self._tbf(self.core, veth.outer, link.capacity_mbps, change=False)
                self._tbf(ns, veth.inner, link.capacity_mbps, change=False)

    def _path_classes(
        self, ns: str, dev: str, match: str, classes: Iterable[tuple[LinkSpec, float]]
    ) -> None:
        # Unclassified traffic (the directory, access units) goes unshaped (HTB default 0).
        lines = [f"qdisc add dev {dev} root handle 1: htb"]
        for minor, (link, mbps) in enumerate(classes, start=0x10):
            lines += [
                f"class add dev {dev} parent 1: classid 1:{minor:x} htb rate {mbps:g}mbit "
                f"ceil {mbps:g}mbit quantum {HTB_QUANTUM}",
                f"qdisc add dev {dev} parent 1:{minor:x} handle {minor:x}: pfifo "
                f"limit {LEAF_QUEUE_PACKETS}",
                f"filter add dev {dev} parent 1: protocol ip prio 1 u32 "
                f"match ip {match} {link.address}/32 flowid 1:{minor:x}",
            ]
        self._tc(ns, lines)

    def _tbf(self, ns: str, dev: str, mbps: float, *, change: bool) -> None:
        verb = "change" if change else "add"
        # A burst of at least 10 ms at the rate, and never below 32 KiB.
        burst = max(32 * 1024, int(mbps * 1e6 / 8 / 100))
        self._tc(
            ns,
            [
                f"qdisc {verb} dev {dev} root handle 1: tbf rate {mbps:g}mbit "
                f"burst {burst} latency {TBF_LATENCY}"
            ],
        )

    def set_capacity(self, link: LinkSpec, mbps: float) -> None:
        """Change ``link``'s capacity (both directions) while traffic flows."""
        veth = next(v for v in self._veths if v.inner == link.tag)
        self._tbf(self.core, veth.outer, mbps, change=True)
        self._tbf(veth.ns, veth.inner, mbps, change=True)
        self._capacity[link.key] = mbps

    def capacity(self, link: LinkSpec) -> float | None:
        return self._capacity.get(link.key)

    def link_bytes(self) -> dict[str, tuple[int, int]]:
        """Bytes each link has carried so far: (toward the server, toward clients)."""
        ip = tool("ip")
        core = {
            entry["ifname"]: entry["stats64"]["tx"]["bytes"]
            for entry in json.loads(run_command([ip, "-n", self.core, "-s", "-j", "link", "show"]))
        }
        out: dict[str, tuple[int, int]] = {}
        for region in self.deployment.regions:
            server = {
                entry["ifname"]: entry["stats64"]["tx"]["bytes"]
                for entry in json.loads(
                    run_command([ip, "-n", self.ns(region.tag), "-s", "-j", "link", "show"])
                )
            }
            for link in region.links:
                out[link.key] = (int(core[f"x-{link.tag}"]), int(server[link.tag]))
        return out

    # -- commands ------------------------------------------------------------------

    def _ip(self, ns: str, lines: Sequence[str]) -> None:
        run_command([tool("ip"), "-n", ns, "-batch", "-"], stdin="\n".join(lines) + "\n")

    def _tc(self, ns: str, lines: Sequence[str]) -> None:
        run_command([tool("tc"), "-n", ns, "-batch", "-"], stdin="\n".join(lines) + "\n")

    def _sysctl(self, ns: str, key: str, value: str) -> None:
        # /proc/sys/net shows the namespace of the process that opens it; Python rather
        # than sysctl(8), which minimal systems lack.
        write = f"open('/proc/sys/{key}', 'w').write({value!r})"
        run_command([*self.exec_prefix(ns), sys.executable, "-c", write])

    # -- tearing down ----------------------------------------------------------------

    def destroy(self) -> None:
        """Delete this topology's namespaces (their veths go with them)."""
        ip = tool("ip")
        existing = set(namespaces())
        for ns in reversed(self.created):
            if ns in existing:
                _kill_namespace_processes(ns)
                run_command([ip, "netns", "delete", ns])
        self.created.clear()
