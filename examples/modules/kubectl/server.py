#!/usr/bin/env python3
"""kubectl: a Forkspacer Custom module that uses its workspace's cluster.

Every lifecycle call asks the workspace's API server for its version with
Debian's kubectl, which reads /forkspacer/workspace_kubeconfig ($KUBECONFIG)
and verifies TLS as any Kubernetes client does. A call succeeds only if the
cluster answered: the answer carries {"serverVersion": "<gitVersion>"}; a
cluster that cannot be reached or refuses the credentials fails the call with
kubectl's own message.

Contract, on $PORT (8080):
  GET  /health     200 {"healthy": true}
  POST /install    201 the request body with "serverVersion" added
  POST /sleep      200 the same
  POST /resume     200 the same
  POST /uninstall  204, no body
  a call the cluster did not answer: 500 {"error": "<kubectl's message>"}
  without a kubeconfig (no `workspace` permission): "serverVersion": null

Every call is logged as one JSON line on stdout, keys sorted:
{"body":...,"endpoint":"install","error":null,"serverVersion":"v1.31.0"}
"""

import json
import os
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KUBECONFIG = os.environ.get("KUBECONFIG", "/forkspacer/workspace_kubeconfig")
# The contract carries small JSON objects; a module must not buffer without bound.
MAX_BODY = 1 << 20
ENDPOINTS = {"install": 201, "sleep": 200, "resume": 200, "uninstall": 204}


def log(event):
    print(json.dumps(event, sort_keys=True, separators=(",", ":")), flush=True)


def server_version():
    """(gitVersion, None) from the cluster, or (None, why not); (None, None)
    without a kubeconfig (no `workspace` permission: no cluster to ask)."""
    if not os.path.exists(KUBECONFIG):
        return None, None
    # kubectl keeps a cache under $HOME; the module's user has no home.
    env = dict(os.environ, HOME="/tmp")
    command = ["kubectl", "--kubeconfig", KUBECONFIG, "--request-timeout=10s", "get", "--raw", "/version"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, env=env)
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, f"kubectl: {err}"
    if done.returncode != 0:
        return None, done.stderr.strip()[-2000:] or f"kubectl exited {done.returncode}"
    try:
        return json.loads(done.stdout)["gitVersion"], None
    except (ValueError, KeyError, TypeError):
        return None, f"kubectl printed no version: {done.stdout[:200]!r}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, body=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            self.answer(200, {"healthy": True})
        else:
            self.answer(404, {"error": f"no {self.path}"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.answer(413, {"error": "body too large"})
            return
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self.answer(400, {"error": "body is not JSON"})
            return
        endpoint = self.path.strip("/")
        if endpoint not in ENDPOINTS:
            self.answer(404, {"error": f"no {self.path}"})
            return
        version, error = server_version()
        log({"body": body, "endpoint": endpoint, "error": error, "serverVersion": version})
        if error:
            self.answer(500, {"error": f"the workspace's cluster did not answer: {error}"})
        elif ENDPOINTS[endpoint] == 204:
            self.answer(204)
        else:
            self.answer(ENDPOINTS[endpoint], dict(body, serverVersion=version))

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    log({"event": "start", "kubeconfig": KUBECONFIG})
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
