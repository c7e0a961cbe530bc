"""The dataset upload benchmark's raw baseline: an HTTP server that only writes a request's body to disk.

The same server stack as the services (uvicorn, one process) and nothing else: no multipart parsing, hashing
or row checks. `python -m bench._upload_sink --port P --folder DIR` serves until stopped; every POST is
written to DIR/<n>.bin and answered with its byte count.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

WRITE_BUFFER = 1 << 20


def make_app(folder: Path):
    counter = itertools.count()

    async def app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        path, size = folder / f"{next(counter)}.bin", 0
        with open(path, "wb", buffering=WRITE_BUFFER) as out:
            while True:
                message = await receive()
                body = message.get("body", b"")
                size += len(body)
                out.write(body)
                if not message.get("more_body"):
                    break
        path.unlink()
        payload = f'{{"bytes": {size}}}'.encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})

    return app


if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--folder", type=Path, required=True)
    args = parser.parse_args()
    uvicorn.run(make_app(args.folder), host="127.0.0.1", port=args.port, log_level="warning")
