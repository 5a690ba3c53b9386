#!/usr/bin/env python3
"""A stand-in for the legacy Node/Express music and image app, for the quick start.

Answers API requests with JSON describing what it received, so you can see what the gateway
forwards (X-Forwarded-*, X-Real-IP, x-request-id, claims as x-user-id, the injected API key).
Like Express it sends `X-Powered-By: Express`, which the gateway strips.

It also serves what a browser uses:
- `/` a small page embedding a protected image and audio clip (its script is `/app.js`,
  since the gateway's Content-Security-Policy allows no inline script);
- `/login?user=NAME&next=PATH` sets the `session` cookie (an HS256 token, as the app's own
  login would) and redirects; `/logout` clears it;
- `/api/images/cover.png` and `/api/audio/clip.wav`, real media files.

Usage: backend.py PORT [JWT_SECRET]   (the secret signs the login cookie)
"""
import importlib.util
import io
import json
import math
import struct
import sys
import wave
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

# deploy/demo/token.py, loaded by path (the standard library has a `token` module too).
_spec = importlib.util.spec_from_file_location("demo_token", Path(__file__).resolve().parent / "token.py")
_demo_token = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_demo_token)
token = _demo_token.token

SECRET = sys.argv[2] if len(sys.argv) > 2 else "quickstart-demo-secret-change-me-0123456789"


def png(width=96, height=64):
    """A gradient PNG (RFC 2083): signature, IHDR, one IDAT, IEND."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    rows = b"".join(
        b"\x00" + bytes(c for x in range(width) for c in (x * 255 // width, y * 255 // height, 160))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def wav(seconds=1.0, rate=8000, hz=440):
    """A mono 16-bit PCM WAV of a sine tone."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(
            struct.pack("<h", int(12000 * math.sin(2 * math.pi * hz * i / rate))) for i in range(int(seconds * rate))
        ))
    return out.getvalue()


PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pending</title>
<script src="/app.js" defer></script></head>
<body>
<h1>Legacy music app (demo)</h1>
<p>Both load through the gateway with the <code>session</code> cookie; without it they get 401.</p>
<img id="cover" src="/api/images/cover.png" alt="cover" width="96" height="64">
<audio id="clip" src="/api/audio/clip.wav" preload="metadata" controls></audio>
<pre id="status">loading</pre>
<p><a href="/login?user=alice&amp;next=/">log in as alice</a> &middot; <a href="/logout">log out</a></p>
</body></html>
"""

# Reports what loaded, in the page and its title (what a test or a person reads).
SCRIPT = b"""
const result = { image: null, audio: null };
function report() {
  const text = JSON.stringify(result);
  document.getElementById('status').textContent = text;
  if (result.image !== null && result.audio !== null) document.title = text;
}
const img = document.getElementById('cover');
const check = () => { result.image = img.naturalWidth > 0 ? img.naturalWidth : 0; report(); };
if (img.complete) check(); else { img.addEventListener('load', check); img.addEventListener('error', check); }
const audio = document.getElementById('clip');
const loaded = () => { result.audio = audio.duration > 0 ? audio.duration : 0; report(); };
const failed = () => { result.audio = 0; report(); };
// A deferred script can run after the clip already failed: its error event is gone then.
if (audio.readyState >= 1) loaded(); else if (audio.error) failed(); else {
  audio.addEventListener('loadedmetadata', loaded);
  audio.addEventListener('error', failed);
}
report();
"""

MEDIA = {
    "/": ("text/html; charset=utf-8", PAGE),
    "/app.js": ("text/javascript", SCRIPT),
    "/api/images/cover.png": ("image/png", png()),
    "/api/audio/clip.wav": ("audio/wav", wav()),
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Express"

    def _send(self, status, content_type, data, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("X-Powered-By", "Express")
        for name, value in extra:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path.startswith("/health"):
            return self._send(200, "application/json", b'{"status": "ok"}\n')
        if url.path == "/login":
            user = query.get("user", ["alice"])[0]
            target = query.get("next", ["/"])[0]
            target = target if target.startswith("/") and not target.startswith("//") else "/"
            cookie = f"session={token(SECRET, user)}; Path=/; HttpOnly; SameSite=Lax"
            return self._send(302, "text/plain", b"logged in\n", [("Set-Cookie", cookie), ("Location", target)])
        if url.path == "/logout":
            return self._send(302, "text/plain", b"logged out\n",
                              [("Set-Cookie", "session=; Path=/; Max-Age=0"), ("Location", "/")])
        if self.command in ("GET", "HEAD") and url.path in MEDIA:
            content_type, data = MEDIA[url.path]
            return self._send(200, content_type, data)
        payload = {
            "app": "legacy-music-app (demo)",
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body_bytes": len(body),
        }
        self._send(200, "application/json", json.dumps(payload, indent=2).encode() + b"\n")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _answer

    def log_message(self, fmt, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
