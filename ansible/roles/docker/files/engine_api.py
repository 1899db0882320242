#!/usr/bin/env python3
"""A few Docker Engine API calls over dockerd's unix socket, for provisioning.

The docker client that comes with a distribution speaks one API range: Debian 12's 20.10
client (API 1.41) is refused by Docker Engine 29 (minimum API 1.44), and a newer client may
be refused by an older daemon. This talks to whichever dockerd it is given at the API version
that daemon reports, so one role serves every Engine version.

    engine_api.py SOCKET ping              exit 0 once dockerd answers
    engine_api.py SOCKET version           print the Engine's version JSON
    engine_api.py SOCKET image-id NAME     print the image's id (exit 1 when absent)
    engine_api.py SOCKET load ARCHIVE      load a docker-archive tar (POST /images/load)

Standard library only: it runs on the node.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import urllib.parse


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 300) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


def call(path: str, method: str, url: str, body: bytes | None = None, ctype: str = "") -> tuple[int, bytes]:
    conn = UnixConnection(path)
    try:
        headers = {"Content-Type": ctype} if ctype else {}
        conn.request(method, url, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        sys.stderr.write(__doc__ or "")
        return 2
    sock, cmd, args = argv[0].removeprefix("unix://"), argv[1], argv[2:]
    try:
        status, body = call(sock, "GET", "/version")
    except OSError as exc:
        sys.stderr.write(f"dockerd at {sock} does not answer: {exc}\n")
        return 1
    if status != 200:
        sys.stderr.write(f"GET /version: HTTP {status}: {body[:500]!r}\n")
        return 1
    version = json.loads(body)
    prefix = "/v" + version["ApiVersion"]
    if cmd == "ping":
        return 0
    if cmd == "version":
        print(json.dumps(version))
        return 0
    if cmd == "image-id" and len(args) == 1:
        status, body = call(sock, "GET", f"{prefix}/images/{urllib.parse.quote(args[0], safe='')}/json")
        if status != 200:
            return 1
        print(json.loads(body)["Id"])
        return 0
    if cmd == "load" and len(args) == 1:
        with open(args[0], "rb") as fh:
            data = fh.read()
        status, body = call(sock, "POST", f"{prefix}/images/load?quiet=1", data, "application/x-tar")
        text = body.decode(errors="replace")
        # The stream reports a failed load inside a 200 answer, as {"error": ...} or "errorDetail".
        if status != 200 or '"error' in text:
            sys.stderr.write(f"POST /images/load: HTTP {status}: {text[:2000]}\n")
            return 1
        print(text.strip())
        return 0
    sys.stderr.write(f"unknown command {cmd!r} {args!r}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
