import asyncio
import ssl
import sys

cert, key, ca = sys.argv[1:4]

async def handle(reader, writer):
    data = await reader.readline()
    writer.write(data.upper())
    await writer.drain()
    writer.close()
    await writer.wait_closed()

async def main():
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=sctx)
    port = server.sockets[0].getsockname()[1]
    cctx = ssl.create_default_context(cafile=ca)
    async def one(i):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=cctx, server_hostname="localhost")
        writer.write(b"hello %d\n" % i)
        await writer.drain()
        answer = await reader.readline()
        writer.close()
        await writer.wait_closed()
        return answer == b"HELLO %d\n" % i
    results = await asyncio.gather(*(one(i) for i in range(10)))
    server.close()
    await server.wait_closed()
    print("asyncio tls", sum(results), "of", len(results))

asyncio.run(main())
