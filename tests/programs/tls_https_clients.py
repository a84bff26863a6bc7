import http.client
import ssl
import sys
import urllib.request

port, ca = int(sys.argv[1]), sys.argv[2]
url = f"https://127.0.0.1:{port}/100000"
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["http/1.1"])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx))
with opener.open(url, timeout=10) as r:
    body = r.read()
    print("urllib", r.status, len(body), body[:21].decode())
conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
conn.request("POST", "/", body=b"abc" * 50000)
r = conn.getresponse()
print("http.client", r.status, r.read() == (b"abc" * 50000)[::-1], conn.sock.version(),
      conn.sock.selected_alpn_protocol())
conn.close()
try:
    import requests
except ImportError:
    print("requests", "absent")
else:
    s = requests.Session(); s.trust_env = False
    r = s.get(url, verify=ca, timeout=10)
    print("requests", r.status_code, len(r.content))
try:
    import urllib3
except ImportError:
    print("urllib3", "absent")
else:
    pool = urllib3.HTTPSConnectionPool("127.0.0.1", port, ca_certs=ca, cert_reqs="CERT_REQUIRED")
    r = pool.request("GET", "/5000")
    print("urllib3", r.status, len(r.data))
try:
    import httpx
except ImportError:
    print("httpx", "absent")
else:
    with httpx.Client(verify=ssl.create_default_context(cafile=ca), trust_env=False) as c:
        r = c.get(url)
    print("httpx", r.status_code, len(r.content))
# A server the CA did not sign is refused, as natively.
try:
    urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(
        context=ssl.create_default_context())).open(url, timeout=10)
except urllib.error.URLError as e:
    print("untrusted", type(e.reason).__name__, e.reason.verify_message)
