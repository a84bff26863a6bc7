import asyncio


async def handle(reader, writer):
    while line := await reader.readline():
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
    return replies == [f"echo {i}-{j}" for j in range(3)]

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        results = await asyncio.wait_for(asyncio.gather(*(client(port, i) for i in range(50))), 20)
    print("clients ok:", sum(results), "of", len(results))
    loop = asyncio.get_running_loop()
    print("executor:", await asyncio.wait_for(loop.run_in_executor(None, sum, range(10)), 5))

asyncio.run(main())
