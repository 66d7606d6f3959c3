"""kube-proxy's part for the burst bench: each new connection to the Service goes to the next
vLLM replica that accepts it (a stopped or loading one is passed over, as kube-proxy routes only
to Ready endpoints), in its own process.

In the bench's own process it competed for the GIL with the bench's SQS calls: filling the queue
with 1,000 requests took 41 s instead of under 2 s, and that time counted as drain.

    python -m bench.round_robin_proxy --port P --backend PORT [--backend PORT ...]
"""

import argparse
import asyncio
import contextlib
import itertools


async def serve(port: int, backends: list[int]) -> None:
    """Until cancelled; `backends` is read at each connection, so a replica appended to it (the
    HPA adding one) takes its turn from the next connection on, as kube-proxy's would."""
    turns = itertools.count()

    async def connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Each replica once, from this connection's turn on (the turns of connections made
        # meanwhile are theirs: taking the next shared turn could land on the same refusal).
        turn = next(turns)
        for offset in range(len(backends)):
            try:
                up_reader, up_writer = await asyncio.open_connection(
                    "127.0.0.1", backends[(turn + offset) % len(backends)]
                )
                break
            except OSError:
                continue  # not Ready (stopped, loading): kube-proxy routes only to Ready ones
        else:
            writer.close()  # none is: the client sees its connection dropped
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(connect, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65_536):
            writer.write(data)
            await writer.drain()
    writer.close()


def main() -> None:
    parse = argparse.ArgumentParser(prog="python -m bench.round_robin_proxy")
    parse.add_argument("--port", type=int, required=True)
    parse.add_argument("--backend", type=int, action="append", required=True)
    args = parse.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.backend))


if __name__ == "__main__":
    main()
