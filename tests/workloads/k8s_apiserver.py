"""A stand-in for the Kubernetes API server's pod endpoints, for the node
agent's test. No real API server can run on this machine (none is in the
registries it reaches), so this serves exactly what spanlet asks a real one
for, shaped as the real one answers:

  GET /api/v1/pods?fieldSelector=spec.nodeName%3DNODE  -> a v1 PodList
  GET /api/v1/pods?...&watch=1&resourceVersion=RV      -> a watch stream
      (chunked, newline-delimited events; a BOOKMARK every second, then it
      ends after timeoutSeconds)

over TLS with the given certificate, answering 401 without the bearer
token. Only pods on NODE are listed. Prints "ready", then one line per
request.

Usage: k8s_apiserver.py PORT CERT KEY TOKEN PODS_JSON
"""

import json
import ssl
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, CERT, KEY, TOKEN, PODS = sys.argv[1:6]
RESOURCE_VERSION = "1000"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        print(f"GET {self.path}", flush=True)
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.send_json(401, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                        "reason": "Unauthorized", "code": 401})
        if url.path != "/api/v1/pods":
            return self.send_json(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                        "reason": "NotFound", "code": 404})
        selector = query.get("fieldSelector", [""])[0]
        node = selector.removeprefix("spec.nodeName=")
        with open(PODS) as f:
            pods = [p for p in json.load(f) if p["spec"].get("nodeName") == node]
        if query.get("watch", ["0"])[0] not in ("1", "true"):
            return self.send_json(200, {"kind": "PodList", "apiVersion": "v1",
                                        "metadata": {"resourceVersion": RESOURCE_VERSION},
                                        "items": pods})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        until = time.monotonic() + min(int(query.get("timeoutSeconds", ["60"])[0]), 60)
        try:
            while time.monotonic() < until:
                time.sleep(1)
                bookmark = {"type": "BOOKMARK", "object": {
                    "kind": "Pod", "apiVersion": "v1",
                    "metadata": {"resourceVersion": RESOURCE_VERSION}}}
                self.chunk(json.dumps(bookmark).encode() + b"\n")
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass


server = ThreadingHTTPServer(("127.0.0.1", int(PORT)), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(CERT, KEY)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
