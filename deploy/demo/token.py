#!/usr/bin/env python3
"""Prints an HS256 JWT for the quick start: token.py SECRET [SUBJECT] [TTL_SECONDS].
Standard library only (RFC 7515 compact serialisation, RFC 7519 claims)."""
import base64
import hashlib
import hmac
import json
import sys
import time


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(secret: str, sub: str = "alice", ttl: int = 3600) -> str:
    now = int(time.time())
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64url(json.dumps({"sub": sub, "iat": now, "exp": now + ttl, "iss": "legacy-app"}).encode())
    signing_input = f"{header}.{claims}".encode()
    signature = b64url(hmac.new(secret.encode(), signing_input, hashlib.sha256).digest())
    return f"{header}.{claims}.{signature}"


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        sys.exit("usage: token.py SECRET [SUBJECT] [TTL_SECONDS]")
    print(token(args[0], args[1] if len(args) > 1 else "alice", int(args[2]) if len(args) > 2 else 3600))
