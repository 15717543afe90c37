"""Serve a TUF repository (or a lead robot's mirror of one) as static files over HTTP.

TUF needs nothing from the server but plain GETs: every file is signed or hashed by metadata the client
verifies, so any host can serve the repository: the workstation, a lead robot, a USB stick behind a laptop.
This is ``python -m http.server`` with a thread per request, no directory listings, quiet logs and a bound
host (127.0.0.1 unless told otherwise)::

    python -m kdmarl_student.fleet_serve REPO_DIR --host 0.0.0.0 --port 8000
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LOGGER = logging.getLogger("kdmarl_student.fleet_serve")


class StaticHandler(SimpleHTTPRequestHandler):
    """GET/HEAD of files under the served directory; directories are not listed."""

    def list_directory(self, path):
        self.send_error(404, "no directory listings")

    def log_message(self, format: str, *args: object) -> None:
        LOGGER.debug("%s %s", self.address_string(), format % args)


def make_server(directory: str | Path, host: str = "127.0.0.1", port: int = 0,
                handler: type[SimpleHTTPRequestHandler] = StaticHandler) -> ThreadingHTTPServer:
    """A threading HTTP server for ``directory`` (not started); port 0 picks a free port."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such directory to serve")
    server = ThreadingHTTPServer((host, port), functools.partial(handler, directory=str(directory)))
    server.daemon_threads = True
    return server


@contextlib.contextmanager
def serving(directory: str | Path, host: str = "127.0.0.1", port: int = 0,
            handler: type[SimpleHTTPRequestHandler] = StaticHandler) -> Iterator[str]:
    """Serve ``directory`` on a background thread; yields the base URL (``http://host:port``)."""
    server = make_server(directory, host, port, handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("directory", type=Path, help="repository (or mirror) directory: metadata/ and targets/")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    server = make_server(args.directory, args.host, args.port)
    print(f"serving {args.directory} at http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
