"""asyncio streams: an echo server on 127.0.0.1 and concurrent clients, with timeouts."""
import asyncio


async def handle(reader, writer):
    while True:
        line = await reader.readline()
        if not line:
            break
        writer.write(b"echo " + line)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def client(port, i):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = []
    for j in range(3):
        writer.write(f"{i}-{j}\n".encode())
        await writer.drain()
        replies.append((await reader.readline()).decode().strip())
    writer.close()
    await writer.wait_closed()
    return replies


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print("listening on loopback:", server.sockets[0].getsockname()[0], port > 0)
    async with server:
        results = await asyncio.wait_for(asyncio.gather(*(client(port, i) for i in range(5))), 5)
        for r in results:
            print(r)
        try:
            await asyncio.wait_for(asyncio.sleep(10), timeout=0.05)
        except asyncio.TimeoutError:
            print("wait_for timed out as expected")
        q = asyncio.Queue()

        async def producer():
            for k in range(5):
                await q.put(k)
                await asyncio.sleep(0.001)
            await q.put(None)

        async def consumer():
            total = 0
            while (item := await q.get()) is not None:
                total += item
            return total

        _, total = await asyncio.wait_for(asyncio.gather(producer(), consumer()), 5)
        print("queue total:", total)
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(None, sum, range(100))
        print("executor:", await asyncio.wait_for(fut, 5))
    print("server closed:", not server.is_serving())


asyncio.run(main())
