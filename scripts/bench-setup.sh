# Shared by scripts/bench and scripts/bench-cost (sourced, not run): builds the binaries with
# cargo profile $PROFILE (default dist, the production build), makes a work directory removed
# on exit, picks free ports, writes the backend and nginx configs and the two Portcullis
# configs (forwarding only; the job; the full pipeline) and the peers' (scripts/peers/: HAProxy
# plain, doing the job's checks, and giving the same answer), and mints the
# HS256 token of the full pipeline and of the peers' same job. Cache hits: nginx's proxy_cache
# on $NGINX_CACHE and the full pipeline's cached route /api/cached (auth = "none", the default
# rate limit, CORS, security headers), both storing the backend's answer for 60 s.
PROFILE=${PROFILE:-dist}

# PORTCULLIS_BIN measures a binary built before (one commit's, while the next one builds).
if [ -n "${PORTCULLIS_BIN:-}" ]; then
  BIN=$PORTCULLIS_BIN
else
  cargo build --profile "$PROFILE" --bin portcullis --example bare_pingora >/dev/null
  BIN=$PWD/target/$PROFILE/portcullis
fi
BARE=$PWD/target/$PROFILE/examples/bare_pingora
WORK=$(mktemp -d /tmp/portcullis-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BACKEND=$(port); NGINX=$(port); BARE_PORT=$(port); PC_FWD=$(port); PC_FULL=$(port); ADMIN1=$(port); ADMIN2=$(port)
HAP_PLAIN=$(port); HAP_JOB=$(port); HAP_SAME=$(port); PC_JOB=$(port); PC_JOB_NC=$(port); ADMIN3=$(port); ADMIN4=$(port)
BENCH_SECRET=bench-secret-bench-secret-bench-secret-0123
NGINX_CACHE=$(port)

# The backend: nginx answering a fixed 200 with a small JSON body (fast enough that it is never
# the bottleneck), on core 1.
mkdir -p "$WORK/nginx"
cat > "$WORK/backend.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/backend.pid; error_log $WORK/backend-error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$BACKEND; location / { default_type application/json; return 200 '{"track":1,"title":"demo"}'; }
    # The OTLP collector of the tracing rows: every export accepted (an empty answer).
    location = /v1/traces { client_max_body_size 16m; return 200 ''; } } }
CONF
cat > "$WORK/proxy.conf" <<CONF
worker_processes 1; daemon off; master_process off; pid $WORK/proxy.pid; error_log $WORK/proxy-error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream backend { server 127.0.0.1:$BACKEND; keepalive 128; }
  proxy_cache_path $WORK/nginx/cache keys_zone=hits:10m max_size=256m;
  server { listen 127.0.0.1:$NGINX;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; proxy_set_header X-Real-IP \$remote_addr; } }
  server { listen 127.0.0.1:$NGINX_CACHE;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_cache hits; proxy_cache_valid 200 60s; proxy_cache_key \$scheme\$host\$request_uri;
      proxy_cache_lock on; add_header Cache-Status \$upstream_cache_status; } } }
CONF
common_cfg() {
  cat <<CONF
[server]
listen = ["127.0.0.1:$1"]
threads = 1
[admin]
listen = "127.0.0.1:$2"
[upstreams.app]
peers = ["127.0.0.1:$BACKEND"]
CONF
}
common_cfg "$PC_FWD" "$ADMIN1" > "$WORK/forward.toml"
cat >> "$WORK/forward.toml" <<CONF
[suspicious]
mode = "off"
[[routes]]
name = "music"
path_prefix = "/api/music"
upstream = "app"
CONF
common_cfg "$PC_FULL" "$ADMIN2" > "$WORK/full.toml"
cat >> "$WORK/full.toml" <<CONF
[jwt]
algorithms = ["HS256"]
secret = "bench-secret-bench-secret-bench-secret-0123"
forward_claims = { sub = "x-user-id" }
# The header is tried first, as configured in production; the cookie row sends only a cookie.
sources = ["header", "cookie:session"]
[rate_limits.default]
per_ip = "100000000/min"
per_user = "100000000/min"
[cors]
allow_origins = ["https://music.example.com"]
[suspicious]
mode = "block"
ban_threshold = 0
[[routes]]
name = "music"
path_prefix = "/api/music"
upstream = "app"
auth = "required"
[[routes]]
name = "open"
path_prefix = "/api/open"
upstream = "app"
auth = "none"
[[routes]]
name = "unlimited"
path_prefix = "/api/unlimited"
upstream = "app"
auth = "required"
rate_limit = "off"
[[routes]]
name = "cached"
path_prefix = "/api/cached"
upstream = "app"
auth = "none"
cache = { ttl = "60s" }
CONF
# The full pipeline with [tracing]: nothing sampled (every request still gets a traceparent
# upstream), and every request sampled (spans exported to the backend's /v1/traces).
for ratio in 0 1; do
  { cat "$WORK/full.toml"; printf '[tracing]\notlp_endpoint = "http://127.0.0.1:%s"\nsample_ratio = %s\n' "$BACKEND" "$ratio"; } > "$WORK/full-trace$ratio.toml"
done
# The job the peers do too: a bearer token verified (from the verified-token cache; with
# cache_capacity = 0, an HMAC per request as the peers do), a per-IP limit not reached, the
# security headers; no CORS, no suspicious-request rules.
JOB_LIMIT=100000000
job_cfg() { # port admin cache_capacity
  common_cfg "$1" "$2"
  cat <<CONF
[jwt]
algorithms = ["HS256"]
secret = "$BENCH_SECRET"
forward_claims = { sub = "x-user-id" }
cache_capacity = $3
[rate_limits.default]
per_ip = "$JOB_LIMIT/min"
[suspicious]
mode = "off"
[[routes]]
name = "music"
path_prefix = "/api/music"
upstream = "app"
auth = "required"
CONF
}
job_cfg "$PC_JOB" "$ADMIN3" 10000 > "$WORK/job.toml"
job_cfg "$PC_JOB_NC" "$ADMIN4" 0 > "$WORK/job-nocache.toml"
# The peers (scripts/peers/): HAProxy as a plain proxy and doing the same job.
sed -e "s/@PORT@/$HAP_PLAIN/; s/@BACKEND@/$BACKEND/" scripts/peers/haproxy-plain.cfg > "$WORK/haproxy-plain.cfg"
sed -e "s/@PORT@/$HAP_JOB/; s/@BACKEND@/$BACKEND/; s/@SECRET@/$BENCH_SECRET/" scripts/peers/haproxy-job.cfg > "$WORK/haproxy-job.cfg"
# HAProxy giving the same answer as the job: its checks, plus a request id both ways, the
# forwarding headers, the five rate-limit headers and one JSON log line on stdout. The limit is
# the job's per-IP limit, so the rate-limit headers carry the same numbers.
sed -e "s/@PORT@/$HAP_SAME/; s/@BACKEND@/$BACKEND/; s/@SECRET@/$BENCH_SECRET/; s/@LIMIT@/$JOB_LIMIT/; s#@WORK@#$WORK#" \
  scripts/peers/haproxy-same.cfg > "$WORK/haproxy-same.cfg"
# What "the same answer" means: every header the job puts on a proxied answer, checked on each
# target claiming it (with the forged-token refusal and the access-log line) before it is measured.
SAME_HEADERS=(content-security-policy x-content-type-options x-frame-options referrer-policy
  cross-origin-opener-policy cross-origin-resource-policy origin-agent-cluster x-dns-prefetch-control
  x-download-options x-permitted-cross-domain-policies x-xss-protection x-request-id
  x-ratelimit-limit x-ratelimit-remaining x-ratelimit-reset ratelimit-policy ratelimit)
check_same() { # name port logfile: a forged token refused, every header present, the line logged
  local forged ok id
  forged=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer ${TOKEN}x" "http://127.0.0.1:$2/api/music/1")
  [ "$forged" = 401 ] || { echo "$1 let a forged token through ($forged)" >&2; exit 1; }
  ok=$(curl -s -D - -o /dev/null -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$2/api/music/1" | tr -d '\r')
  for h in "${SAME_HEADERS[@]}"; do
    grep -qi "^$h: ." <<<"$ok" || { echo "$1 sends no $h" >&2; exit 1; }
  done
  id=$(grep -i '^x-request-id: ' <<<"$ok" | cut -d' ' -f2)
  for _ in $(seq 50); do grep -q "\"request_id\":\"$id\"" "$3" 2>/dev/null && return 0; sleep 0.1; done
  echo "$1 wrote no access-log line for request $id in $3" >&2; exit 1
}
# HAProxy-same and the job, each started alone with stdout in a file and checked, then stopped;
# the measured instances write their log lines to /dev/null.
check_same_answers() {
  local name port hp
  for name in haproxy-same portcullis-job; do
    if [ "$name" = haproxy-same ]; then port=$HAP_SAME; haproxy -db -f "$WORK/haproxy-same.cfg" >"$WORK/$name.check.log" 2>&1 & hp=$!
    else port=$PC_JOB; "$BIN" --config "$WORK/job.toml" >"$WORK/$name.check.log" 2>&1 & hp=$!; fi
    for _ in $(seq 100); do curl -fs -o /dev/null -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$port/api/music/1" && break; sleep 0.1; done
    check_same "$name" "$port" "$WORK/$name.check.log"; kill "$hp"; wait "$hp" 2>/dev/null || true
  done
}
TOKEN=$(python3 - <<'PY'
import base64, hashlib, hmac, json, time
b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
head = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b(json.dumps({"sub": "bench-user", "exp": int(time.time()) + 86400}).encode())
sig = b(hmac.new(b"bench-secret-bench-secret-bench-secret-0123", f"{head}.{body}".encode(), hashlib.sha256).digest())
print(f"{head}.{body}.{sig}")
PY
)
