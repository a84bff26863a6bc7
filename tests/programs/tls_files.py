import ssl
import sys


def show(label, fn):
    try:
        fn()
        print(label, "ok")
    except Exception as e:
        print(label, type(e).__name__, getattr(e, "errno", None), str(e))
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
show("cafile", lambda: ctx.load_verify_locations(cafile=sys.argv[1]))
show("missing cafile", lambda: ctx.load_verify_locations(cafile="no-such-ca.pem"))
show("missing certfile", lambda: ctx.load_cert_chain("no-such-cert.pem"))
show("not a cert", lambda: ctx.load_verify_locations(cafile=sys.argv[4]))
show("cert chain", lambda: ctx.load_cert_chain(sys.argv[2], sys.argv[3]))
show("default context", lambda: ssl.create_default_context(cafile=sys.argv[1]))
show("no args", lambda: ctx.load_verify_locations())
print("stats", ctx.cert_store_stats())
