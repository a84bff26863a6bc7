import socket
import socketserver
import threading


class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line.upper())

socketserver.ThreadingTCPServer.allow_reuse_address = True
with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo) as server:
    port = server.server_address[1]
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    results = {}
    def client(i):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            f = c.makefile("rwb")
            ok = True
            for j in range(5):
                f.write(f"client {i} line {j}\n".encode()); f.flush()
                ok &= f.readline() == f"CLIENT {i} LINE {j}\n".encode()
            results[i] = ok
    clients = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for c in clients: c.start()
    for c in clients: c.join(20)
    server.shutdown()
    t.join(10)
print("threads ok:", sum(results.values()), "of 20; server stopped:", not t.is_alive())
