"""Pure vendor-payload normalization: no I/O, no anyio, aiohttp or aiomqtt (a test enforces it)."""
