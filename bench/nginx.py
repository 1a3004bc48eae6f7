"""nginx as the bench runs it: a generated configuration in the work folder, in the foreground.

One server block on a loopback address does all three jobs of the comparisons:
``/files/`` serves a folder with sendfile (the download anchor), ``/dav/`` takes WebDAV
PUTs (``ngx_http_dav_module``, compiled into Debian's nginx; it does **not** fsync), and
``/json`` returns a static JSON body (the control-plane anchor).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bench.procs import Service, Services, port_open
from bench.rawservers import LOCATE_LIKE


def config(work: Path, host: str, port: int, files_dir: Path) -> str:
    """nginx.conf: two workers (one per core), sendfile on, no access log."""
    body = json.dumps(LOCATE_LIKE)
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "".join(
        f"{kind}_temp_path {work}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}worker_processes 2;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    {temp}
    server {{
        listen {host}:{port} reuseport;
        location /files/ {{
            alias {files_dir}/;
            default_type application/octet-stream;
        }}
        location /dav/ {{
            root {work}/dav-root;
            dav_methods PUT DELETE;
            create_full_put_path on;
            client_max_body_size 0;
            client_body_buffer_size 1m;
        }}
        location = /json {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
"""


def start(services: Services, work: Path, host: str, port: int, files_dir: Path) -> Service:
    """Write the configuration under ``work`` and start nginx in the foreground."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "dav-root" / "dav").mkdir(parents=True, exist_ok=True)
    conf = work / "nginx.conf"
    conf.write_text(config(work, host, port, files_dir))
    return services.start(
        "nginx",
        ["nginx", "-p", str(work), "-e", str(work / "error.log"), "-c", str(conf)],
        ready=lambda: port_open(host, port),
    )


def dav_dir(work: Path) -> Path:
    """Where nginx writes ``PUT /dav/NAME``."""
    return work / "dav-root" / "dav"
