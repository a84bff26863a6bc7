"""http.server in a thread serving the cwd on 127.0.0.1, fetched with urllib.request (no proxies)."""
import http.server
import json
import threading
import urllib.error
import urllib.request

with open("hello.txt", "w") as f:
    f.write("Hello over HTTP\n" * 3)
with open("data.json", "w") as f:
    json.dump({"answer": 42, "items": [1, 2, 3]}, f)


class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep stderr quiet
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        reply = json.dumps({"received": body.decode(), "path": self.path}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
httpd.timeout = 5
port = httpd.server_address[1]
thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
thread.start()
base = f"http://127.0.0.1:{port}"
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never use a proxy

try:
    with opener.open(f"{base}/hello.txt", timeout=5) as r:
        body = r.read()
        print("GET hello.txt:", r.status, r.headers["Content-Type"], r.headers["Content-Length"])
        print(body.decode().splitlines())
    with opener.open(f"{base}/data.json", timeout=5) as r:
        print("GET data.json:", json.load(r))
    with opener.open(f"{base}/", timeout=5) as r:
        listing = r.read().decode()
        print("dir listing mentions files:", "hello.txt" in listing and "data.json" in listing)
    req = urllib.request.Request(f"{base}/submit?x=1", data=b"payload", method="POST")
    with opener.open(req, timeout=5) as r:
        print("POST:", r.status, json.load(r))
    req = urllib.request.Request(f"{base}/hello.txt", headers={"Range": "bytes=0-4"})
    with opener.open(req, timeout=5) as r:
        print("Range request (ignored by SimpleHTTPRequestHandler):", r.status, len(r.read()))
    try:
        opener.open(f"{base}/missing.txt", timeout=5)
    except urllib.error.HTTPError as e:
        print("missing:", e.code, e.reason)
finally:
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)
print("server stopped:", not thread.is_alive())
