#!/usr/bin/env python3
"""A stand-in Kubernetes API server, for forklet's tests.

Serves TLS with CERT and KEY (PEM files; waited for up to 30 s, so a test
can issue the certificate once it knows the container's address), on HOST
(0.0.0.0) and API_PORT (6443). A request is let in with the bearer token TOKEN,
or with a client certificate issued by CLIENT_CA; anything else gets 401.

  GET /version   200 {"major": "1", "minor": "31", "gitVersion": GIT_VERSION, ...}
  GET /healthz   200 ok
  anything else  404, as a Kubernetes Status

Every request is logged as one JSON line on stdout.
"""

import json
import os
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

CERT = os.environ["CERT"]
KEY = os.environ["KEY"]
TOKEN = os.environ.get("TOKEN")
CLIENT_CA = os.environ.get("CLIENT_CA")
GIT_VERSION = os.environ.get("GIT_VERSION", "v1.31.0-standin")


def log(event):
    print(json.dumps(event, sort_keys=True, separators=(",", ":")), flush=True)


def status(code, message):
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": code}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, code, body):
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authenticated(self):
        if TOKEN and self.headers.get("Authorization") == f"Bearer {TOKEN}":
            return "token"
        if CLIENT_CA and self.connection.getpeercert():
            return "client certificate"
        return None

    def do_GET(self):
        how = self.authenticated()
        path = urlsplit(self.path).path
        log({"path": path, "auth": how})
        if how is None:
            self.answer(401, status(401, "Unauthorized"))
        elif path == "/version":
            self.answer(200, {"major": "1", "minor": "31", "gitVersion": GIT_VERSION, "platform": "linux/amd64"})
        elif path == "/healthz":
            self.answer(200, "ok")
        else:
            self.answer(404, status(404, f"the server could not find {path}"))

    def log_message(self, *args):
        pass


def main():
    deadline = time.monotonic() + 30
    while not (os.path.exists(CERT) and os.path.exists(KEY)):
        if time.monotonic() > deadline:
            sys.exit(f"apiserver: no {CERT} or {KEY}")
        time.sleep(0.1)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(CERT, KEY)
    if CLIENT_CA:
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(CLIENT_CA)
    server = ThreadingHTTPServer((os.environ.get("HOST", "0.0.0.0"), int(os.environ.get("API_PORT", "6443"))), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    log({"event": "listening", "port": server.server_address[1]})
    server.serve_forever()


if __name__ == "__main__":
    main()
