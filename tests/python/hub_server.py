"""A loopback server that answers the two Hugging Face Hub routes actprm reads (standard library
only), for tests/remote.rs: the tree listing

    GET /api/{datasets|models|spaces}/ORG/NAME/tree/REV/PATH[?recursive=true]

(a JSON list of {"type", "path", "size", "oid"[, "lfs"]}, two entries a page, the next page in a
`Link: <URL>; rel="next"` header, as the Hub pages), and file downloads

    GET /[datasets/|spaces/]ORG/NAME/resolve/REV/PATH

which answer with a 302 to /cdn/... as the Hub does for LFS files. A repository is the folder
ROOT/KIND/ORG/NAME. With --token T every request must carry `Authorization: Bearer T` (401
otherwise). Prints the port on its first line, then serves until killed.

usage: hub_server.py ROOT [--token T]
"""

import hashlib
import http.server
import json
import os
import sys
import urllib.parse

ROOT = sys.argv[1]
TOKEN = sys.argv[sys.argv.index("--token") + 1] if "--token" in sys.argv else None
PAGE = 2


def repo_files(folder, recursive):
    entries = []
    if not os.path.isdir(folder):
        return None
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            entries.append(("directory", path))
            if recursive:
                entries.extend(repo_files(path, True))
        else:
            entries.append(("file", path))
    return entries


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        if parts[:1] == ["cdn"]:
            path = os.path.join(ROOT, *parts[1:])
            with open(path, "rb") as f:
                return self.send(200, f.read())
        if TOKEN is not None and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.send(401, b'{"error":"Invalid credentials"}')
        if parts[:1] == ["api"]:
            kind, org, name, verb, rev = parts[1:6]
            rest = [p for p in parts[6:] if p]
            if verb != "tree" or rev != "main":
                return self.send(404)
            repo = os.path.join(ROOT, kind, org, name)
            query = urllib.parse.parse_qs(url.query)
            entries = repo_files(os.path.join(repo, *rest), query.get("recursive") == ["true"])
            if entries is None:
                return self.send(404, b'{"error":"Entry not found"}')
            listing = []
            for kind_, path in entries:
                rel = os.path.relpath(path, repo)
                if kind_ == "directory":
                    listing.append({"type": "directory", "path": rel, "oid": "0" * 40, "size": 0})
                    continue
                data = open(path, "rb").read()
                entry = {
                    "type": "file",
                    "path": rel,
                    "size": len(data),
                    "oid": hashlib.sha1(data).hexdigest(),
                }
                if rel.endswith((".parquet", ".safetensors")):
                    entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}
                listing.append(entry)
            start = int(query.get("cursor", ["0"])[0])
            page = listing[start : start + PAGE]
            headers = [("Content-Type", "application/json")]
            if start + PAGE < len(listing):
                q = dict(query)
                q["cursor"] = [str(start + PAGE)]
                next_url = f"http://{self.headers['Host']}{url.path}?{urllib.parse.urlencode(q, doseq=True)}"
                headers.append(("Link", f'<{next_url}>; rel="next"'))
            return self.send(200, json.dumps(page).encode(), headers)
        kind = "models"
        if parts[0] in ("datasets", "spaces"):
            kind, parts = parts[0], parts[1:]
        if len(parts) < 5 or parts[2] != "resolve" or parts[3] != "main":
            return self.send(404)
        org, name = parts[0], parts[1]
        rel = os.path.join(kind, org, name, *parts[4:])
        if not os.path.isfile(os.path.join(ROOT, rel)):
            return self.send(404, b"Entry not found")
        return self.send(302, b"", [("Location", "/cdn/" + urllib.parse.quote(rel))])


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
