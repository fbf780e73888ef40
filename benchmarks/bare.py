"""The baseline: a bare aiohttp + asyncio.Semaphore loop that sends N requests and keeps nothing.

    python benchmarks/bare.py URL PROMPTS MODELS CONCURRENCY

Sends the same bodies batchrun sends (one per prompt and model) and prints
the wall time. Standard asyncio, as such a script is usually written.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp


async def main(url: str, prompts: int, models: int, concurrency: int) -> None:
    limit = asyncio.Semaphore(concurrency)
    headers = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(body: bytes) -> None:
            async with limit, session.post(url + "/chat/completions", data=body) as response:
                await response.read()

        bodies = (
            json.dumps(
                {
                    "model": f"model-{chr(97 + m)}",
                    "messages": [{"role": "user", "content": f"What is {i} + {i % 97}?"}],
                    "max_tokens": 16,
                }
            ).encode()
            for i in range(prompts)
            for m in range(models)
        )
        started = time.perf_counter()
        pending: set[asyncio.Task[None]] = set()
        for body in bodies:
            await limit.acquire()
            limit.release()
            task = asyncio.create_task(one(body))
            pending.add(task)
            task.add_done_callback(pending.discard)
            if len(pending) >= concurrency * 2:
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        await asyncio.gather(*pending)
        print(f"{time.perf_counter() - started:.3f}")


if __name__ == "__main__":
    url, prompts, models, concurrency = sys.argv[1], *map(int, sys.argv[2:5])
    asyncio.run(main(url, prompts, models, concurrency))
