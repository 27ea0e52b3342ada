"""An MCP client for the end-to-end test (cli/tests/e2e/mcp.rs), built on the official
MCP Python SDK (PyPI `mcp`, pinned by install_mcp_sdk in scripts/services.sh): the
server is driven by a client nobody here wrote.

    MCP_TOKEN=<bearer token> python mcp_client.py URL [auto|legacy]

connects to URL over Streamable HTTP with `Authorization: Bearer $MCP_TOKEN`, letting
the SDK negotiate the protocol version (`auto`, the SDK's default) or forcing the
initialize handshake of the versions before 2026-07-28 (`legacy`, which has sessions).
It prints one JSON line, `{"connected": true, "protocol_version": "..."}`, or
`{"error": "...", "http_statuses": [...]}` and exits 2 when the connection fails (the
statuses of the HTTP answers it got: the SDK's error does not name a 401). Then it reads
one JSON request per line from stdin and answers each with one JSON line on stdout,
in the same session, until stdin ends:

    {"list_tools": true}
        -> {"tools": [{"name", "description", "inputSchema"}, ...]}
    {"call": "get_topology", "arguments": {...}}
        -> {"isError": bool, "text": ["..."], "structuredContent": {...} | null}

A request the SDK raises on (a protocol error) is answered `{"error": "..."}`.
"""

import asyncio
import json
import os
import sys

import httpx2
import mcp
from mcp.client.streamable_http import streamable_http_client


def exception_text(error: BaseException) -> str:
    """The messages of an exception and of whatever it groups or wraps."""
    parts = [f"{type(error).__name__}: {error}"]
    for inner in getattr(error, "exceptions", ()) or ():
        parts.append(exception_text(inner))
    if error.__cause__ is not None:
        parts.append(exception_text(error.__cause__))
    return " | ".join(parts)


def say(value: dict) -> None:
    print(json.dumps(value), flush=True)


async def answer(client: mcp.Client, request: dict) -> dict:
    if request.get("list_tools"):
        listed = await client.list_tools()
        return {
            "tools": [
                {
                    "name": tool.name,
                    "description": tool.description,
                    "inputSchema": tool.input_schema,
                }
                for tool in listed.tools
            ]
        }
    result = await client.call_tool(request["call"], request.get("arguments", {}))
    return {
        "isError": bool(result.is_error),
        "text": [block.text for block in result.content if block.type == "text"],
        "structuredContent": result.structured_content,
    }


async def run(url: str, mode: str, token: str, statuses: list) -> None:
    async def record(response) -> None:
        statuses.append(response.status_code)

    # The SDK's public way to send headers: an httpx2 client of our own (with the
    # SDK's own timeouts: an answer may be an event stream that takes a while).
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx2.Timeout(30, read=300),
        event_hooks={"response": [record]},
    )
    async with http:
        transport = streamable_http_client(url, http_client=http)
        async with mcp.Client(transport, mode=mode, cache=None) as client:
            say({"connected": True, "protocol_version": client.protocol_version})
            while True:
                line = await asyncio.to_thread(sys.stdin.readline)
                if not line:
                    return
                try:
                    say(await answer(client, json.loads(line)))
                except Exception as error:  # noqa: BLE001 - reported to the Rust test
                    say({"error": exception_text(error)})


def main() -> int:
    url = sys.argv[1]
    mode = sys.argv[2] if len(sys.argv) > 2 else "auto"
    statuses: list = []
    try:
        asyncio.run(run(url, mode, os.environ["MCP_TOKEN"], statuses))
    except Exception as error:  # noqa: BLE001 - reported to the Rust test
        say({"error": exception_text(error), "http_statuses": statuses})
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
