"""The floor: the engine's HTTP stack answering a fixed JSON body, whatever the request.

uvicorn with `coupons serve`'s settings (uvloop, httptools, no access log, one process) and a
plain ASGI app that, like the engine's checkout lane, reads the body and answers with two
messages; the body has a validation answer's size and shape. No Kafka, no PostgreSQL, no
parsing: what any request to the service costs before the service does anything.

    python bench/floor.py --port 8002
"""

import argparse
import json
from typing import Any

import uvicorn

BODY = json.dumps(
    {
        "valid": True,
        "code": "BENCH-CHECKOUT",
        "campaign_id": "00000000-0000-0000-0000-000000000000",
        "amount": 4900,
        "discount": 500,
        "total": 4400,
        "refusal": None,
        "codes": [
            {
                "code": "BENCH-CHECKOUT",
                "campaign_id": "00000000-0000-0000-0000-000000000000",
                "valid": True,
                "discount": 500,
                "refusal": None,
            }
        ],
    }
).encode()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:  # the whole request body, as a handler reads it
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
