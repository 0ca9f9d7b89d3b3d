#!/usr/bin/env python3
"""python: a Forkspacer Custom module the way modules are usually published.

A plain Python 3 process, stdlib only, meant to run as PID 1 of its container
(no init) as a non-root user. It installs no SIGTERM handler, so as PID 1 it
ignores SIGTERM and `docker stop` has to wait for its grace period and kill it;
that is the point: it lets tests see how forklet copes with such modules.

Contract, on $PORT (8080):
  GET  /health     200 {"healthy": true, "message", "timestamp", "uptime"}
  POST /install    201 the request body with "installedBy" and "installs" added
                   (400 with the reason when the body has "reject": "<reason>")
  POST /sleep      200 the request body with "asleep": true
  POST /resume     200 the request body with "asleep": false
  POST /uninstall  204, no body

At start it reads /forkspacer/config.json if there is one; a file that exists
but cannot be read is fatal (message on stderr, exit status 1). It then waits
START_DELAY_SECONDS (environment) or "startDelaySeconds" (config) seconds
before it listens, to play a module that is slow to start.

Every request is logged as one JSON line on stdout, in the same format as the
Rust example modules (examples/modules/hello/src/lib.rs): compact, keys
sorted, e.g. {"body":{},"endpoint":"health"}. The first line is a start event:
{"config":...,"event":"start","startDelaySeconds":...}.
"""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONFIG_PATH = "/forkspacer/config.json"
# The contract carries small JSON objects; a module must not buffer without bound.
MAX_BODY = 1 << 20
STARTED = time.monotonic()
_log_lock = threading.Lock()


def dumps(value):
    """JSON as serde_json writes it with sorted maps: compact, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def log_line(value):
    """One JSON line on stdout, flushed; a closed stdout must not take the module down."""
    line = dumps(value) + "\n"
    with _log_lock:
        try:
            sys.stdout.write(line)
            sys.stdout.flush()
        except (OSError, ValueError):
            pass


def fail(message):
    print(f"python module: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def read_config():
    """The config forklet put in /forkspacer, None when there is none.

    A file that is there but unreadable (permissions, a directory, ...) is
    fatal; a file that is not JSON is reported and ignored, as the Rust
    modules do.
    """
    try:
        with open(CONFIG_PATH, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        fail(f"cannot read {CONFIG_PATH}: {err}")
    try:
        return json.loads(text)
    except ValueError as err:
        print(f"python module: {CONFIG_PATH} is not JSON, ignored: {err}", file=sys.stderr, flush=True)
        return None


def start_delay(config):
    raw = os.environ.get("START_DELAY_SECONDS", "").strip()
    source = "START_DELAY_SECONDS"
    if not raw and isinstance(config, dict) and config.get("startDelaySeconds") is not None:
        raw = config["startDelaySeconds"]
        source = "startDelaySeconds in " + CONFIG_PATH
    if raw in ("", None):
        return 0.0
    try:
        delay = float(raw)
    except (TypeError, ValueError):
        fail(f"{source} is not a number of seconds: {raw!r}")
    if not delay >= 0:  # also refuses NaN
        fail(f"{source} must be zero or more, not {raw!r}")
    return delay


def rfc3339_now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.1: every answer carries Content-Length (none on 204), connections stay open.
    protocol_version = "HTTP/1.1"

    def version_string(self):
        return "forklet-python-module"

    def log_message(self, format, *args):
        # No access log on stderr: stdout carries the request lines.
        pass

    def do_GET(self):
        self.handle_request()

    def do_POST(self):
        self.handle_request()

    def handle_request(self):
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return self.reply(400, "bad Content-Length")
        if length < 0:
            return self.reply(400, "bad Content-Length")
        if length > MAX_BODY:
            self.close_connection = True
            return self.reply(413, "request body too large")
        raw = self.rfile.read(length) if length else b""
        if len(raw) < length:
            self.close_connection = True
            return
        try:
            body = json.loads(raw) if raw else {}
        except ValueError as err:
            return self.reply(400, f"request body is not JSON: {err}")
        log_line({"endpoint": self.path.lstrip("/"), "body": body})
        status, answer = route(self.command, self.path, body)
        self.reply(status, answer)

    def reply(self, status, answer):
        self.send_response(status)
        if status == 204:
            self.end_headers()
            return
        data = (answer if isinstance(answer, str) else dumps(answer)).encode("utf-8")
        kind = "text/plain; charset=utf-8" if isinstance(answer, str) else "application/json"
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def route(method, path, body):
    metadata = dict(body) if isinstance(body, dict) else {}
    if (method, path) == ("GET", "/health"):
        return 200, {
            "healthy": True,
            "message": "Service is running",
            "timestamp": rfc3339_now(),
            "uptime": round(time.monotonic() - STARTED, 3),
        }
    if method == "POST" and path == "/install":
        reason = metadata.get("reject")
        if isinstance(reason, str):
            return 400, reason
        installs = metadata.get("installs")
        if isinstance(installs, bool) or not isinstance(installs, int) or installs < 0:
            installs = 0
        metadata["installs"] = installs + 1
        metadata["installedBy"] = "python"
        return 201, metadata
    if method == "POST" and path in ("/sleep", "/resume"):
        metadata["asleep"] = path == "/sleep"
        return 200, metadata
    if method == "POST" and path == "/uninstall":
        return 204, None
    return 404, f"no route for {method} {path}"


def main():
    config = read_config()
    delay = start_delay(config)
    log_line({"event": "start", "config": config, "startDelaySeconds": delay})
    if delay:
        print(f"python module: waiting {delay:g}s before listening", file=sys.stderr, flush=True)
        time.sleep(delay)
    try:
        port = int(os.environ.get("PORT") or 8080)
    except ValueError:
        fail(f"PORT is not a port number: {os.environ.get('PORT')!r}")
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    print(f"python module: listening on :{port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
