#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: repeatable on a noisy machine where CPU time
# is not. Starts an nginx upstream like connvault-bench's (a fixed 2,048-byte JSON body for GET /v2/persons, a
# fixed v2 token for POST /v2/auth/token), then each proxy under `valgrind --tool=callgrind --instr-atstart=no`:
# the vault (`connvaultd --dev` with a connection `bench-proxy` to the upstream), the bare NIO proxy
# (`bench-nio-server --proxy-upstream`), the raw NIO proxy (the same with `--raw`: an HTTP/1.1 codec of its own), and
# nginx's `proxy_pass` configured as connvault-bench does. One keep-alive client connection sends WARMUP requests
# uninstrumented
# (the first makes the vault's one token exchange), then instrumentation goes on, REQUESTS more are sent, the
# counts are dumped, and Benchmarks/callgrind-modules.py divides them by REQUESTS and groups them by module. The
# kernel is not counted (callgrind sees user space only): these are the proxy's own instructions per request.
#
#   Benchmarks/callgrind-proxy.sh [BIN_DIR] [OUT_DIR]
#     BIN_DIR   release build: connvaultd, connvaultctl, bench-nio-server (default .build/release)
#     OUT_DIR   callgrind files and reports (default bench-results/callgrind-proxy)
#   REQUESTS (default 2000), WARMUP (default 500), PROXIES (default "vault nio raw nginx"), TAG (file name suffix)
#   ROUTE=token counts the vault's cached token route instead (`GET /v1/connections/bench-proxy/token`; set
#   PROXIES=vault): issue 11's item 6, the token path's instructions per request.
# Needs valgrind (callgrind_control), nginx and python3.
set -euo pipefail
bin_dir=$(realpath "${1:-.build/release}")
out=${2:-bench-results/callgrind-proxy}
requests=${REQUESTS:-2000}
warmup=${WARMUP:-500}
proxies=${PROXIES:-vault nio raw nginx}
tag=${TAG:-}
route=${ROUTE:-proxy}
here=$(dirname "$(realpath "$0")")
mkdir -p "$out"
out=$(realpath "$out")
work=$(mktemp -d /tmp/cv-cg-XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# valgrind 3.19 cannot read the DWARF 5 of Swift 6's binaries: it runs copies without debug information (the symbol
# table, which is all callgrind needs for function names, stays).
mkdir -p "$work/bin"
for binary in connvaultd connvaultctl bench-nio-server; do
    objcopy --strip-debug "$bin_dir/$binary" "$work/bin/$binary"
done

prefix=/v1/connections/bench-proxy/proxy/
token=bench-token-0123456789abcdef
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
persons=$(python3 -c '
import json
people = []
while len(json.dumps({"data": people})) < 1900:
    i = len(people)
    people.append({"id": 1000 + i, "first_name": "Bench", "last_name": "Person%d" % i, "email": "p%d@example.invalid" % i})
body = json.dumps({"data": people}, separators=(",", ":"))
print(body + " " * (2048 - len(body)))')

mkdir -p "$work/upstream"
cat >"$work/upstream/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $work/upstream/nginx.pid;
error_log $work/upstream/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    server_tokens off;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    client_body_temp_path $work/upstream/body;
    server {
        listen 127.0.0.1:$port;
        default_type application/json;
        location = /v2/auth/token {
            return 200 '{"access_token":"$token","token_type":"Bearer","expires_in":86400,"scope":"personio:persons:read"}';
        }
        location = /v2/persons { return 200 '$persons'; }
        location / { return 404 '{"error":"not_found"}'; }
    }
}
EOF
/usr/sbin/nginx -p "$work/upstream" -c "$work/upstream/nginx.conf" -e "$work/upstream/error.log" &
pids+=($!)

# Sends N keep-alive GETs of the proxied path on one connection to a Unix socket; checks each is a 200 with the
# upstream's body.
cat >"$work/client.py" <<'EOF'
import socket, sys, time
path, count, expected_length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for attempt in range(1200):
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("no proxy on " + path)
target = sys.argv[4] + "v2/persons" if sys.argv[4].endswith("/") else sys.argv[4]
request = ("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % target).encode()
buffer = b""
for _ in range(count):
    s.sendall(request)
    while b"\r\n\r\n" not in buffer:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("connection closed")
        buffer += chunk
    head, _, buffer = buffer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    if not lines[0].startswith("HTTP/1.1 200"):
        sys.exit("unexpected answer: " + lines[0])
    length = next(int(l.split(":")[1]) for l in lines if l.lower().startswith("content-length:"))
    while len(buffer) < length:
        buffer += s.recv(65536)
    if expected_length >= 0 and length != expected_length:
        sys.exit("unexpected body length %d" % length)
    buffer = buffer[length:]
EOF

# Runs one proxy under callgrind: measure NAME SOCKET DIRECTORY COMMAND…
measure() {
    local name=$1 socket=$2 directory=$3
    shift 3
    local file="$out/callgrind.$name$tag.out"
    rm -f "$file"
    (cd "$directory" && exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$file" "$@" \
        >"$work/$name.log" 2>&1) &
    local pid=$!
    pids+=("$pid")
    if [ "$name" = vault ]; then
        for _ in $(seq 1200); do [ -S "$directory/.connvault/admin.sock" ] && break; sleep 0.1; done
        sleep 1
        CONNVAULT_ADMIN_SOCKET="$directory/.connvault/admin.sock" "$work/bin/connvaultctl" add bench-proxy \
            --provider personio-v2 --client-id bench-client --secret-stdin --api-base-url "http://127.0.0.1:$port" \
            --allow-uid "$(id -u)" <<<"bench-secret-proxy-canary" >/dev/null
    fi
    local target=$prefix length=2048
    if [ "$route" = token ]; then target=/v1/connections/bench-proxy/token length=-1; fi
    python3 "$work/client.py" "$socket" "$warmup" "$length" "$target"
    callgrind_control -i on "$pid" >/dev/null
    python3 "$work/client.py" "$socket" "$requests" "$length" "$target"
    callgrind_control -d "$pid" >/dev/null
    callgrind_control -i off "$pid" >/dev/null
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    # The dump is the second part file when the final one is written at exit too.
    local dumped
    dumped=$(ls -1 "$file".* 2>/dev/null | head -1 || true)
    [ -n "$dumped" ] && mv "$dumped" "$file" && rm -f "$file".*
    python3 "$here/callgrind-modules.py" "$file" "$requests" 30 | tee "$out/modules.$name$tag.txt"
}

for proxy in $proxies; do
    case $proxy in
    vault)
        mkdir -p "$work/vault"
        echo "== vault proxy (connvaultd --dev), $requests requests after $warmup"
        measure vault "$work/vault/.connvault/app.sock" "$work/vault" "$work/bin/connvaultd" --dev --log-level warning
        ;;
    nginx)
        # nginx's proxy_pass as connvault-bench configures it (upstream keep-alive, Authorization injected).
        mkdir -p "$work/nginx-proxy"
        cat >"$work/nginx-proxy/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $work/nginx-proxy/nginx.pid;
error_log $work/nginx-proxy/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    server_tokens off;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    client_body_temp_path $work/nginx-proxy/body;
    proxy_temp_path $work/nginx-proxy/proxy;
    upstream personio {
        server 127.0.0.1:$port;
        keepalive 32;
        keepalive_requests 1000000000;
        keepalive_timeout 300s;
    }
    server {
        listen unix:$work/nginx-proxy/proxy.sock;
        location $prefix {
            proxy_pass http://personio/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host 127.0.0.1:$port;
            proxy_set_header Authorization "Bearer $token";
        }
        location / { return 404; }
    }
}
EOF
        echo "== nginx proxy_pass, $requests requests after $warmup"
        measure nginx "$work/nginx-proxy/proxy.sock" "$work/nginx-proxy" /usr/sbin/nginx -p "$work/nginx-proxy" \
            -c "$work/nginx-proxy/nginx.conf" -e "$work/nginx-proxy/error.log"
        ;;
    nio)
        echo "== bare NIO proxy (bench-nio-server --proxy-upstream), $requests requests after $warmup"
        measure nio "$work/nio.sock" "$work" "$work/bin/bench-nio-server" --socket "$work/nio.sock" \
            --proxy-upstream "127.0.0.1:$port" --proxy-prefix "$prefix" --authorization "Bearer $token"
        ;;
    raw)
        echo "== raw NIO proxy (bench-nio-server --proxy-upstream --raw), $requests requests after $warmup"
        measure raw "$work/raw.sock" "$work" "$work/bin/bench-nio-server" --socket "$work/raw.sock" \
            --proxy-upstream "127.0.0.1:$port" --proxy-prefix "$prefix" --authorization "Bearer $token" --raw
        ;;
    esac
done
echo "reports in $out: modules.*.txt; callgrind_annotate --inclusive=yes $out/callgrind.NAME.out for the rest"
