"""A tiny OpenAI-compatible chat server for tests and demos (stdlib only; binds 127.0.0.1).

    python -m arlarena_envs.leaderboard.fake_openai --port 8011
    arlarena leaderboard evaluate --env arlarena/Sokoban-v0 --policy openai:fake@http://127.0.0.1:8011/v1

POST /v1/chat/completions answers with `<think>..</think><action>A</action>`, where A is the
first admissible action listed in the prompt ("Your admissible actions ... are: ['a', 'b']"),
or, with --mode mixed, a reply without an <action> tag every other turn. It
records every request body in memory and serves them at GET /requests (tests check the
sampling parameters). GET /v1/models lists the one model.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_ADMISSIBLE = re.compile(r"admissible actions of the current situation are: \[(.*?)\]\.", re.S)


class _Handler(BaseHTTPRequestHandler):
    server_version = "fake-openai/1"
    requests: list[dict] = []
    lock = threading.Lock()
    mode = "first"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, code: int, obj: object) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "arlarena"}]})
        elif self.path == "/requests":
            with self.lock:
                self._send(200, list(self.requests))
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:  # noqa: N802
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with self.lock:
            self.requests.append(body)
            n = len(self.requests)
        prompt = body["messages"][-1]["content"]
        m = _ADMISSIBLE.search(prompt)
        actions = re.findall(r"'([^']*)'", m.group(1)) if m else []
        action = actions[0] if actions else "look"
        if self.mode == "mixed" and n % 2 == 0:
            content = "<think>I am not sure what to do.</think>"  # tagged, but no <action>: no_tag
        else:
            content = f"<think>the first admissible action</think><action>{action}</action>"
        self._send(
            200,
            {
                "id": f"chatcmpl-{n}",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "fake"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 8, "total_tokens": len(prompt.split()) + 8},
            },
        )


def serve(port: int = 0, mode: str = "first", host: str = "127.0.0.1") -> ThreadingHTTPServer:
    handler = type("Handler", (_Handler,), {"requests": [], "lock": threading.Lock(), "mode": mode})
    return ThreadingHTTPServer((host, port), handler)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0, help="0 = a free port (printed on stdout)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--mode", choices=["first", "mixed"], default="first")
    args = ap.parse_args()
    srv = serve(args.port, args.mode, args.host)
    print(f"PORT {srv.server_address[1]}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
