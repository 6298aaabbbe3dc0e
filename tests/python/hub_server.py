"""A loopback server that answers the Hugging Face Hub routes actprm reads and writes (standard
library only), for tests/remote.rs: the tree listing

    GET /api/{datasets|models|spaces}/ORG/NAME/tree/REV/PATH[?recursive=true]

(a JSON list of {"type", "path", "size", "oid"[, "lfs"]}, two entries a page, the next page in a
`Link: <URL>; rel="next"` header, as the Hub pages), and file downloads

    GET /[datasets/|spaces/]ORG/NAME/resolve/REV/PATH

which answer with a 302 to /cdn/... as the Hub does for LFS files; and the write path of
`huggingface_hub.create_commit`:

    POST /api/repos/create                               {"name", "organization", "type", "private"}
    POST /api/{kind}/ORG/NAME/preupload/REV              which files go through LFS
    POST /[datasets/]ORG/NAME.git/info/lfs/objects/batch where to PUT each LFS object: one signed
         URL (an X-Upload-Token header it must echo), or parts when larger than --multipart-above
         bytes (a chunk_size and one URL per part, then a completion POST with the parts' ETags),
         and a verify URL; an object held already gets no action
    POST /api/{kind}/ORG/NAME/commit/REV                 NDJSON: header, file (base64), lfsFile (an
         uploaded object by sha256), deletedFile; checked whole, then applied at once

Each commit is appended to ROOT/.commits.jsonl (repository, summary, and per file its mode and
the parts its object was uploaded in). A repository is the folder ROOT/KIND/ORG/NAME. With
--token T every API request must carry `Authorization: Bearer T` (401 otherwise; the storage
URLs are signed instead). Prints the port on its first line, then serves until killed.

usage: hub_server.py ROOT [--token T] [--multipart-above BYTES]
"""

import base64
import hashlib
import http.server
import json
import os
import shutil
import sys
import threading
import urllib.parse

ROOT = sys.argv[1]
TOKEN = sys.argv[sys.argv.index("--token") + 1] if "--token" in sys.argv else None
MULTIPART_ABOVE = (
    int(sys.argv[sys.argv.index("--multipart-above") + 1])
    if "--multipart-above" in sys.argv
    else 1 << 40
)
CHUNK = 16 * 1024
PAGE = 2
LFS = os.path.join(ROOT, ".lfs")
LOCK = threading.Lock()
# oid -> parts it was uploaded in (1 for a single PUT)
UPLOADED_IN = {}


def upload_token(oid):
    return hashlib.sha256(("signed:" + oid).encode()).hexdigest()[:16]


def lfs_kind(path, size, sample):
    if size > 10 * 1024 * 1024 or b"\0" in sample:
        return "lfs"
    return "lfs" if path.endswith((".parquet", ".arrow", ".safetensors")) else "regular"


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


    def body(self):
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def json_reply(self, status, value):
        return self.send(status, json.dumps(value).encode(), [("Content-Type", "application/json")])

    def authorised(self):
        return TOKEN is None or self.headers.get("Authorization") == f"Bearer {TOKEN}"

    def do_PUT(self):
        parts = [urllib.parse.unquote(p) for p in urllib.parse.urlsplit(self.path).path.split("/")[1:]]
        data = self.body()
        if parts[0] == "lfs-store":
            oid = parts[1]
            if self.headers.get("X-Upload-Token") != upload_token(oid):
                return self.send(403, b"bad signature")
            if hashlib.sha256(data).hexdigest() != oid:
                return self.send(400, b"content does not match its oid")
            os.makedirs(LFS, exist_ok=True)
            with open(os.path.join(LFS, oid), "wb") as f:
                f.write(data)
            UPLOADED_IN[oid] = 1
            return self.send(200)
        if parts[0] == "lfs-part":
            oid, number = parts[1], int(parts[2])
            folder = os.path.join(ROOT, ".lfs-parts", oid)
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, f"{number:05d}"), "wb") as f:
                f.write(data)
            return self.send(200, b"", [("ETag", '"' + hashlib.md5(data).hexdigest() + '"')])
        return self.send(404)

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        data = self.body()
        if parts[0] == "lfs-complete":
            oid = parts[1]
            request = json.loads(data)
            folder = os.path.join(ROOT, ".lfs-parts", oid)
            whole = b""
            for i, part in enumerate(request["parts"], 1):
                chunk = open(os.path.join(folder, f"{part['partNumber']:05d}"), "rb").read()
                if part["partNumber"] != i or part["etag"].strip('"') != hashlib.md5(chunk).hexdigest():
                    return self.send(400, b"parts out of order or etag mismatch")
                whole += chunk
            if hashlib.sha256(whole).hexdigest() != oid:
                return self.send(400, b"parts do not make the object")
            os.makedirs(LFS, exist_ok=True)
            with open(os.path.join(LFS, oid), "wb") as f:
                f.write(whole)
            shutil.rmtree(folder)
            UPLOADED_IN[oid] = len(request["parts"])
            return self.send(200)
        if parts[0] == "lfs-verify":
            request = json.loads(data)
            path = os.path.join(LFS, request["oid"])
            ok = os.path.isfile(path) and os.path.getsize(path) == request["size"]
            return self.send(200 if ok else 404)
        if not self.authorised():
            return self.send(401, b'{"error":"Invalid credentials"}')
        host = f"http://{self.headers['Host']}"
        if parts[:3] == ["api", "repos", "create"]:
            request = json.loads(data)
            repo = os.path.join(ROOT, request["type"] + "s", request["organization"], request["name"])
            if os.path.isdir(repo):
                return self.json_reply(409, {"error": "You already created this repo"})
            os.makedirs(repo)
            with open(os.path.join(ROOT, ".created.jsonl"), "a") as f:
                f.write(json.dumps(request) + "\n")
            return self.json_reply(200, {"url": f"{host}/{request['type']}s/{request['name']}"})
        if parts[0] == "api" and len(parts) >= 6 and parts[4] in ("preupload", "commit"):
            kind, org, name, verb = parts[1:5]
            repo = os.path.join(ROOT, kind, org, name)
            if not os.path.isdir(repo):
                return self.json_reply(404, {"error": "Repository not found"})
            if verb == "preupload":
                files = json.loads(data)["files"]
                return self.json_reply(200, {"files": [
                    {
                        "path": f["path"],
                        "uploadMode": lfs_kind(f["path"], f["size"], base64.b64decode(f["sample"])),
                        "shouldIgnore": False,
                    }
                    for f in files
                ]})
            return self.commit(kind, org, name, repo, data)
        if url.path.endswith(".git/info/lfs/objects/batch"):
            if self.headers.get("Accept") != "application/vnd.git-lfs+json":
                return self.send(406)
            request = json.loads(data)
            objects = []
            for o in request["objects"]:
                oid, size = o["oid"], o["size"]
                if os.path.isfile(os.path.join(LFS, oid)):
                    objects.append({"oid": oid, "size": size})
                    continue
                verify = {"href": f"{host}/lfs-verify", "header": {}}
                if size > MULTIPART_ABOVE:
                    count = (size + CHUNK - 1) // CHUNK
                    header = {"chunk_size": str(CHUNK)}
                    header.update({f"{i:05d}": f"{host}/lfs-part/{oid}/{i}" for i in range(1, count + 1)})
                    upload = {"href": f"{host}/lfs-complete/{oid}", "header": header}
                else:
                    upload = {"href": f"{host}/lfs-store/{oid}", "header": {"X-Upload-Token": upload_token(oid)}}
                objects.append({"oid": oid, "size": size, "actions": {"upload": upload, "verify": verify}})
            return self.send(
                200,
                json.dumps({"transfer": "basic", "objects": objects}).encode(),
                [("Content-Type", "application/vnd.git-lfs+json")],
            )
        return self.send(404)

    def commit(self, kind, org, name, repo, data):
        lines = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        if not lines or lines[0]["key"] != "header":
            return self.json_reply(400, {"error": "the first line must be the header"})
        writes, deletes, record = [], [], []
        for line in lines[1:]:
            value = line["value"]
            path = value["path"]
            if path.startswith("/") or ".." in path.split("/"):
                return self.json_reply(400, {"error": f"bad path {path}"})
            if line["key"] == "file":
                writes.append((path, base64.b64decode(value["content"])))
                record.append({"path": path, "mode": "regular"})
            elif line["key"] == "lfsFile":
                stored = os.path.join(LFS, value["oid"])
                if not os.path.isfile(stored):
                    return self.json_reply(422, {"error": f"LFS object of {path} was not uploaded"})
                writes.append((path, open(stored, "rb").read()))
                record.append({"path": path, "mode": "lfs", "parts": UPLOADED_IN.get(value["oid"], 0)})
            elif line["key"] == "deletedFile":
                if not os.path.isfile(os.path.join(repo, path)):
                    return self.json_reply(404, {"error": f"{path} does not exist"})
                deletes.append(path)
                record.append({"path": path, "mode": "deleted"})
            else:
                return self.json_reply(400, {"error": f"unknown key {line['key']}"})
        with LOCK:
            for path, content in writes:
                target = os.path.join(repo, path)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as f:
                    f.write(content)
            for path in deletes:
                os.remove(os.path.join(repo, path))
            with open(os.path.join(ROOT, ".commits.jsonl"), "a") as f:
                f.write(json.dumps({
                    "repository": f"{kind}/{org}/{name}",
                    "summary": lines[0]["value"]["summary"],
                    "files": record,
                }) + "\n")
        oid = hashlib.sha1(data).hexdigest()
        return self.json_reply(200, {"commitOid": oid, "commitUrl": f"/{kind}/{org}/{name}/commit/{oid}"})


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
