"""Pure vendor-payload normalization: no I/O, no anyio, httpx or aiomqtt (a test enforces it)."""
