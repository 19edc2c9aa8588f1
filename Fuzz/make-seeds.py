#!/usr/bin/env python3
"""Writes the seed corpora of Fuzz/Corpus/<target>/: small, hand-made valid inputs (real requests, cgroup lines,
stored JSON). Secrets are canaries. Run from the package root; the files are committed, this regenerates them."""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Corpus")


def write(target, name, data):
    folder = os.path.join(ROOT, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def request(method, path, body=None, headers=(), version="1.1"):
    lines = [f"{method} {path} HTTP/{version}", "Host: vault"]
    lines += list(headers)
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body.encode())}"]
    return "\r\n".join(lines) + "\r\n\r\n" + (body or "")


CREATE = ('{"id":"payroll","provider":"personio-v2","settings":{"scope":"personio:persons:read"},'
          '"secrets":{"client_id":"CANARY-SEED-ID","client_secret":"CANARY-SEED-SECRET"},'
          '"grants":{"uids":[1000],"groups":["adm"],"units":["payroll.service"],'
          '"rules":[{"unit":"payroll.service","proxy":["GET /v2/persons*"],"token":false,"rate_per_minute":60}]}}')
EDIT = ('{"settings":{"api_base_url":"https://api.personio.de","proxy_max_body":4096,"company_id":null},'
        '"secrets":{"client_secret":"CANARY-SEED-NEW"},"grants":{"uids":[1000,1001]}}')
GRANTS = ('{"uids":[1000],"rules":[{"uid":1001,"exe_sha256":"' + "ab" * 32 + '","proxy":["* /v2/persons/*/employments"]},'
          '{"group":"adm","scope":"personio:persons:read"}]}')
RECRUITING = '{"id":"jobs","provider":"personio-recruiting","secrets":{"recruiting_token":"CANARY-SEED-RT"}}'

admin = {
    "health": request("GET", "/v1/health"),
    "list": request("GET", "/v1/connections"),
    "show": request("GET", "/v1/connections/fuzz"),
    "create": request("POST", "/v1/connections", CREATE),
    "create-recruiting": request("POST", "/v1/connections", RECRUITING),
    "edit": request("PATCH", "/v1/connections/fuzz", EDIT),
    "disable": request("POST", "/v1/connections/fuzz/disable", '{"reason":"fuzz"}'),
    "enable": request("POST", "/v1/connections/fuzz/enable", "{}"),
    "reset": request("POST", "/v1/connections/fuzz/reset",
                     '{"client_id":"CANARY-SEED-ID2","client_secret":"CANARY-SEED-SECRET2"}'),
    "grants": request("PUT", "/v1/connections/fuzz/grants", GRANTS),
    "verify": request("POST", "/v1/connections/fuzz/verify"),
    "disconnect": request("DELETE", "/v1/connections/payroll"),
    "audit": request("GET", "/v1/audit?connection=fuzz&since=2026-01-01T00:00:00Z&limit=5"),
    "audit-verify": request("GET", "/v1/audit/verify"),
    "status": request("GET", "/v1/status"),
    "metrics": request("GET", "/metrics"),
    "rotate-key": request("POST", "/v1/keys/rotate"),
    "pipelined": request("GET", "/v1/health") + request("GET", "/v1/connections/fuzz")
    + request("POST", "/v1/connections/fuzz/disable"),
    "chunked": "POST /v1/connections/fuzz/disable HTTP/1.1\r\nHost: vault\r\nContent-Type: application/json\r\n"
    "Transfer-Encoding: chunked\r\n\r\n5\r\n{\"rea\r\n9\r\nson\":\"x\"}\r\n0\r\n\r\n",
    "expect-continue": request("PUT", "/v1/connections/fuzz/grants", '{"uids":[7]}', ["Expect: 100-continue"]),
    "http10": request("GET", "/v1/status", version="1.0"),
    "close": request("GET", "/v1/health", headers=["Connection: close"]),
    "bad-method": request("BREW", "/v1/health"),
    "unknown-field": request("POST", "/v1/connections", '{"id":"x","provider":"personio-v1","oops":1}'),
}
for name, data in admin.items():
    write("http-admin", name, data)

app = {
    "health": request("GET", "/v1/health"),
    "list": request("GET", "/v1/connections"),
    "token": request("GET", "/v1/connections/fuzz/token"),
    "token-min-ttl": request("GET", "/v1/connections/fuzz/token?min_ttl=300"),
    "proxy-get": request("GET", "/v1/connections/fuzz/proxy/v2/persons?limit=10&offset=0"),
    "proxy-post": request("POST", "/v1/connections/fuzz/proxy/v2/persons", '{"first_name":"Ada"}'),
    "proxy-encoded": request("GET", "/v1/connections/fuzz/proxy/v2/persons/%31/employments"),
    "proxy-traversal": request("GET", "/v1/connections/fuzz/proxy/v2/%2e%2e/admin"),
    "unknown": request("GET", "/v1/connections/nope/token"),
    "admin-route": request("POST", "/v1/keys/rotate"),
    "pipelined": request("GET", "/v1/health") + request("GET", "/v1/connections/fuzz/token"),
    # The codec's own paths: a chunked body with an extension and a trailer, an empty line before a request line,
    # HEAD, and a request after one that ends its connection (never read).
    "proxy-chunked": "POST /v1/connections/fuzz/proxy/v2/persons HTTP/1.1\r\nHost: vault\r\n"
    "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    "5;x=y\r\n{\"a\":\r\n2\r\n1}\r\n0\r\nX-Trailer: t\r\n\r\n",
    "crlf-head-close": "\r\n" + request("HEAD", "/v1/health") + request("GET", "/v1/health", headers=["Connection: close"])
    + request("GET", "/v1/connections/fuzz/token"),
}
for name, data in app.items():
    write("http-app", name, data)

# json-requests: first byte picks the type (order of JSONRequestsTarget.Kind), then the body.
kinds = ["create", "edit", "disable", "enable", "reset", "grants", "grantRule", "settings", "settingsPatch", "secrets"]
bodies = {
    "create": [CREATE, RECRUITING],
    "edit": [EDIT, '{"settings":{"scope":null}}'],
    "disable": ['{"reason":"offboarding"}', "{}"],
    "enable": ["{}"],
    "reset": ['{"client_id":"CANARY-SEED-ID","client_secret":"CANARY-SEED-SECRET"}', '{"webhook_token":"CANARY-W"}'],
    "grants": [GRANTS, '{"uids":[0,1000],"groups":["adm","staff"],"units":["a.service","b.scope"]}'],
    "grantRule": ['{"unit":"payroll.service","exe":"/usr/bin/python3","proxy":["GET /v2/*"],"token":true}',
                  '{"uid":1000,"proxy":[]}'],
    "settings": ['{"api_base_url":"http://127.0.0.1:8080/base","app_id":"app","partner_id":"p","company_id":"1",'
                 '"permissions":["employees:read"],"proxy_max_body":1024}', '{"scope":"personio:persons:read"}'],
    "settingsPatch": ['{"api_base_url":null,"scope":"personio:persons:read personio:absences:read"}'],
    "secrets": ['{"client_id":"CANARY-\\u0041","client_secret":"CANARY-\\"escaped\\""}'],
}
for kind, items in bodies.items():
    for index, body in enumerate(items):
        write("json-requests", f"{kind}-{index}", bytes([kinds.index(kind)]) + body.encode())

# store-records: 0 settings JSON as stored, 1 a grant rule's canonical JSON, 2 an audit entry (NUL-separated).
write("store-records", "settings", b"\x00" + b'{"api_base_url":"https://api.personio.de","scope":"personio:persons:read"}')
write("store-records", "settings-empty", b"\x00{}")
write("store-records", "rule", b"\x01" + b'{"exe_sha256":"' + b"cd" * 32 + b'","proxy":["GET \\/v2\\/persons*"],"uid":1000}')


def audit(flags, time, uid, pid, comm, unit, action, connection, outcome, detail, seq):
    sep = b"\xff"
    out = bytes([2, flags]) + time.encode() + sep + struct.pack(">q", uid) + struct.pack(">q", pid)
    out += comm.encode() + sep
    if flags & 1:
        out += unit.encode() + sep
    out += action.encode() + sep
    if flags & 2:
        out += connection.encode() + sep
    out += outcome.encode() + sep + detail.encode() + sep
    return out + struct.pack(">q", seq)


write("store-records", "audit", audit(3, "2026-12-01T12:00:00Z", 0, 4242, "connvaultctl", "sshd.service",
                                      "connection.create", "payroll", "ok", "provider=personio-v2", 1))
write("store-records", "audit-minimal", audit(0, "2026-12-01T12:00:01Z", 1000, 7, "?", "", "token.issued", "",
                                              "refused", "", 2))

proc = {
    "cgroup-service": "0::/system.slice/payroll.service\n",
    "cgroup-nested": "0::/system.slice/payroll.service/worker\n",
    "cgroup-user": "0::/user.slice/user-1000.slice/user@1000.service/app.slice/payroll.service\n",
    "cgroup-scope": "0::/user.slice/user-1000.slice/session-3.scope\n",
    "cgroup-v1": "12:pids:/system.slice/payroll.service\n1:name=systemd:/system.slice/payroll.service\n0::/init.scope\n",
    "cgroup-root": "0::/\n",
    "status": "Name:\tpython3\nUmask:\t0022\nState:\tS (sleeping)\nPid:\t4242\nUid:\t1000\t1000\t1000\t1000\n"
    "CapEff:\t0000000000080000\n",
    "comm": "payroll-worker\n",
}
for name, data in proc.items():
    write("proc-parsers", name, data)

proxy = {
    "plain": "/v2/persons\0limit=10&offset=0\0GET /v2/persons*",
    "encoded": "/v2/persons/%31/employments\0\0GET /v2/persons/*/employments",
    "unicode": "/v2/persons/J%C3%BCrgen;v=1\0q=%40x\0* /v2/*",
    "traversal": "/v2/%2e%2e/admin\0\0GET /v2/*",
    "double": "/v2/%252e%252e/admin",
    "scheme": "/http:%2f%2fevil\0a[b]=c|d",
    "brackets": "/v2/[x]{y}|z\0a%zz\0DELETE /v2/persons/*",
}
for name, data in proxy.items():
    write("proxy-path", name, data)

cli = {
    "hoist": "--json\0list",
    "hoist-socket": "--admin-socket\0/run/connvault/admin.sock\0show\0payroll",
    "hoist-equals": "--app-socket=/run/connvault/app.sock\0--json\0token\0payroll",
    "secret-flag": "add\0payroll\0--client-secret=CANARY-SEED",
    "secret-stdin": "reset\0payroll\0--secret-stdin",
    "grant": "grant\0payroll\0--rule\0unit=a.service,proxy=GET /v2/*\0--uid\0"
    "1000",
}
for name, data in cli.items():
    write("cli-args", name, data)

# upstream-answer: one byte that picks the reads' size, then what Personio sends on one connection.
answers = {
    "length": "\x00HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"data\":[]}",
    "chunked": "\x03HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-RateLimit-Remaining: 9\r\n\r\n"
    "5;a=b\r\nhello\r\n6\r\n world\r\n0\r\nExpires: never\r\n\r\n",
    "close-delimited": "\x05HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
    "interim": "\x01HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    "HTTP/1.1 204 No Content\r\nETag: \"x\"\r\n\r\n",
    "http10": "\x02HTTP/1.0 429 Too Many Requests\r\nRetry-After: 30\r\nContent-Length: 2\r\n\r\n{}",
    "not-modified": "\x07HTTP/1.1 304 Not Modified\r\nContent-Length: 120\r\nConnection: keep-alive\r\n\r\n",
    "split": "\x04HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nCANARY",
    "redirect": "\x06HTTP/1.1 302 Found\r\nLocation: https://elsewhere.invalid/x\r\nContent-Length: 0\r\n\r\n",
}
for name, data in answers.items():
    write("upstream-answer", name, data)
