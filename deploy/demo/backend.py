#!/usr/bin/env python3
"""A stand-in for the legacy Node/Express music and image app, for the quick start.

Answers every request with JSON describing what it received, so you can see what the gateway
forwards (X-Forwarded-*, X-Real-IP, x-request-id, claims as x-user-id, the injected API key).
Like Express it sends `X-Powered-By: Express`, which the gateway strips.
Usage: backend.py PORT
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Express"

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/health"):
            payload = {"status": "ok"}
        else:
            payload = {
                "app": "legacy-music-app (demo)",
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body_bytes": len(body),
            }
        data = json.dumps(payload, indent=2).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Powered-By", "Express")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _answer

    def log_message(self, fmt, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
