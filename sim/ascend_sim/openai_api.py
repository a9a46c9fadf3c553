"""OpenAI-compatible endpoints of the simulated engine (vLLM shapes)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

from ascend_sim import kv
from ascend_sim.httpd import HTTPError, Request, Response, json_response
from ascend_sim.log import log
from ascend_sim.metrics import Metrics

WORDS = ("the", "model", "answer", "is", "a", "simulated", "token", "stream", "from", "ascend", "npu", "cluster",
         "data", "parallel", "prefill", "decode", "future", "of", "ai", "and", "vllm", "serves", "every",
         "request", "with", "care", "while", "engines", "share", "weights", "across", "nodes")
BLOCK_SIZE = 128
WHERE = "serving.py"


@dataclass
class EngineConfig:
    """What the request handlers need to know about this engine."""

    model_path: str
    served_names: list[str]
    max_model_len: int
    max_num_seqs: int
    seed: int
    token_delay: float
    kv_role: str | None
    engine_id: str
    advertise_host: str
    first_kv_port: int | None
    tp_size: int
    kv_timeout: float


def word_count(text: str) -> int:
    """The simulator's tokenizer: one token per whitespace-separated word."""
    return len(text.split())


def token_ids(text: str) -> list[int]:
    """Stable ids for the words of text."""
    return [int.from_bytes(hashlib.sha256(w.encode()).digest()[:2], "big") for w in text.split()]


def generate(prompt: str, seed: int, max_tokens: int, ignore_eos: bool) -> tuple[list[str], str]:
    """Deterministic tokens for prompt+seed; natural stop after 64..127 tokens unless ignore_eos."""
    rng = random.Random(hashlib.sha256(f"{seed}\0{prompt}".encode()).digest())
    natural = 64 + rng.randrange(64)
    count = max_tokens if ignore_eos else min(max_tokens, natural)
    tokens = [" " + rng.choice(WORDS) for _token in range(count)]
    return tokens, "length" if count >= max_tokens else "stop"


def _chat_text(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        raise HTTPError(400, "messages must be a non-empty list")
    parts = []
    for msg in messages:
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        parts.append(content or "")
    return " ".join(parts)


def _prompt_text(prompt: Any) -> tuple[str, int]:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return prompt, word_count(prompt)
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return " ".join(map(str, prompt)), len(prompt)
    raise HTTPError(400, "prompt must be a string, a list with one string, or a list of token ids "
                         "(batched prompts are not supported by the simulator)")


class Engine:
    """Routes requests; owns metrics and the max-num-seqs scheduler slots."""

    def __init__(self, cfg: EngineConfig, readiness: Callable[[], str | None]) -> None:
        self.cfg = cfg
        self.readiness = readiness
        self.metrics = Metrics(cfg.served_names[0])
        self.slots = asyncio.Semaphore(cfg.max_num_seqs)
        self.created = int(time.time())

    async def handle(self, req: Request) -> Response:
        """Dispatch one request."""
        route = {
            ("GET", "/health"): self._health, ("GET", "/v1/models"): self._models,
            ("GET", "/metrics"): self._metrics, ("POST", "/tokenize"): self._tokenize,
            ("POST", "/v1/completions"): self._completions, ("POST", "/v1/chat/completions"): self._chat,
        }.get((req.method, req.path))
        if route is None:
            raise HTTPError(404, f"Not Found: {req.method} {req.path}", "NotFoundError")
        return await route(req)

    async def _health(self, _req: Request) -> Response:
        problem = self.readiness()
        if problem:
            return Response(503, json.dumps({"error": problem}).encode())
        return Response(200, b"")

    async def _models(self, _req: Request) -> Response:
        data = [{"id": name, "object": "model", "created": self.created, "owned_by": "vllm",
                 "root": self.cfg.model_path, "parent": None, "max_model_len": self.cfg.max_model_len,
                 "permission": []} for name in self.cfg.served_names]
        return json_response({"object": "list", "data": data})

    async def _metrics(self, _req: Request) -> Response:
        return Response(200, self.metrics.render().encode(), "text/plain; version=0.0.4; charset=utf-8")

    def _check_model(self, body: dict[str, Any]) -> str:
        model = body.get("model")
        if model is None:
            return self.cfg.served_names[0]
        if model not in self.cfg.served_names:
            raise HTTPError(404, f"The model `{model}` does not exist.", "NotFoundError")
        return str(model)

    async def _tokenize(self, req: Request) -> Response:
        body = req.json()
        self._check_model(body)
        text = _chat_text(body["messages"]) if "messages" in body else _prompt_text(body.get("prompt", ""))[0]
        tokens = token_ids(text)
        return json_response({"count": len(tokens), "max_model_len": self.cfg.max_model_len, "tokens": tokens,
                              "token_strs": None})

    def _limits(self, body: dict[str, Any], prompt_tokens: int, default: int | None) -> int:
        requested = body.get("max_completion_tokens", body.get("max_tokens"))
        limit = self.cfg.max_model_len
        if requested is None:
            requested = default if default is not None else limit - prompt_tokens
        if not isinstance(requested, int) or isinstance(requested, bool) or requested < 1:
            raise HTTPError(400, f"max_tokens must be an integer >= 1, got {requested!r}")
        if prompt_tokens + requested > limit:
            raise HTTPError(400, f"This model's maximum context length is {limit} tokens. However, you requested "
                                 f"{prompt_tokens + requested} tokens ({prompt_tokens} in the messages, {requested} "
                                 "in the completion). Please reduce the length of the messages or completion.")
        return requested

    async def _kv_before(self, params: dict[str, Any], rid: str) -> None:
        if not params.get("do_remote_prefill") or self.cfg.kv_role not in ("kv_consumer", "kv_both"):
            return
        host, port = params.get("remote_host"), params.get("remote_port")
        try:
            await kv.handshake(str(host), int(port), rid, self.cfg.engine_id, params.get("remote_engine_id"),
                               self.cfg.kv_timeout)
        except (kv.KVError, TypeError, ValueError) as err:
            log("ERROR", "mooncake_connector.py", f"Request {rid}: {err}")
            raise HTTPError(500, f"Request {rid}: {err}", "InternalServerError") from None

    def _kv_after(self, params: dict[str, Any], rid: str, prompt_tokens: int) -> dict[str, Any] | None:
        if not params.get("do_remote_decode") or self.cfg.kv_role not in ("kv_producer", "kv_both"):
            return None
        blocks = max(1, -(-prompt_tokens // BLOCK_SIZE))
        return {"do_remote_prefill": True, "do_remote_decode": False, "remote_block_ids": list(range(blocks)),
                "remote_engine_id": self.cfg.engine_id, "remote_request_id": rid,
                "remote_host": self.cfg.advertise_host, "remote_port": self.cfg.first_kv_port,
                "tp_size": self.cfg.tp_size}

    async def _completions(self, req: Request) -> Response:
        return await self._serve(req, chat=False)

    async def _chat(self, req: Request) -> Response:
        return await self._serve(req, chat=True)

    async def _serve(self, req: Request, chat: bool) -> Response:
        arrival = time.perf_counter()
        problem = self.readiness()
        if problem:
            raise HTTPError(503, f"Engine not ready: {problem}", "ServiceUnavailableError")
        body = req.json()
        model = self._check_model(body)
        text, prompt_tokens = (_chat_text(body.get("messages")), 0) if chat else _prompt_text(body.get("prompt"))
        prompt_tokens = prompt_tokens or word_count(text)
        if prompt_tokens >= self.cfg.max_model_len:
            raise HTTPError(400, f"The prompt (total length {prompt_tokens}) is too long to fit into the model "
                                 f"(context length {self.cfg.max_model_len}).")
        max_tokens = self._limits(body, prompt_tokens, None if chat else 16)
        prefix = "chatcmpl" if chat else "cmpl"
        rid = f"{prefix}-{req.headers.get('x-request-id') or uuid.uuid4().hex}"
        params = body.get("kv_transfer_params") or {}
        if not isinstance(params, dict):
            raise HTTPError(400, "kv_transfer_params must be an object")
        log("INFO", WHERE, f"Received request {rid}: prompt_tokens={prompt_tokens}, max_tokens={max_tokens}, "
            f"kv_transfer_params={json.dumps(params) if params else None}")
        await self._kv_before(params, rid)
        tokens, finish = generate(text, self.cfg.seed, max_tokens, bool(body.get("ignore_eos")))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens),
                 "total_tokens": prompt_tokens + len(tokens)}
        head = {"id": rid, "created": int(time.time()), "model": model}
        if body.get("stream"):
            opts = body.get("stream_options") or {}
            stream = self._stream(head, chat, tokens, finish, usage, bool(opts.get("include_usage")), arrival)
            return Response(200, stream=stream)
        await self._run(tokens, finish, prompt_tokens, arrival)
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": "".join(tokens), "tool_calls": [],
                                              "reasoning_content": None},
                      "logprobs": None, "finish_reason": finish, "stop_reason": None}
        else:
            choice = {"index": 0, "text": "".join(tokens), "logprobs": None, "finish_reason": finish,
                      "stop_reason": None, "prompt_logprobs": None}
        out = {**head, "object": "chat.completion" if chat else "text_completion", "choices": [choice],
               "usage": usage, "kv_transfer_params": self._kv_after(params, rid, prompt_tokens)}
        return json_response(out)

    async def _tokens(self, tokens: list[str], prompt_tokens: int, arrival: float) -> AsyncIterator[str]:
        """Yield tokens at the simulated pace, holding a scheduler slot and recording metrics."""
        m = self.metrics
        m.waiting += 1
        async with self.slots:
            m.waiting -= 1
            m.running += 1
            m.kv_usage = min(1.0, m.running / self.cfg.max_num_seqs)
            m.prompt_tokens += prompt_tokens
            first = None
            try:
                for tok in tokens:
                    if self.cfg.token_delay:
                        await asyncio.sleep(self.cfg.token_delay)
                    if first is None:
                        first = time.perf_counter()
                        m.ttft.observe(first - arrival)
                    m.generation_tokens += 1
                    yield tok
            finally:
                m.running -= 1
                m.kv_usage = min(1.0, m.running / self.cfg.max_num_seqs)
            if first is not None and len(tokens) > 1:
                m.tpot.observe((time.perf_counter() - first) / (len(tokens) - 1))

    async def _run(self, tokens: list[str], finish: str, prompt_tokens: int, arrival: float) -> None:
        async for _token in self._tokens(tokens, prompt_tokens, arrival):
            pass
        self.metrics.success[finish] += 1

    async def _stream(self, head: dict[str, Any], chat: bool, tokens: list[str], finish: str,
                      usage: dict[str, int], include_usage: bool, arrival: float) -> AsyncIterator[bytes]:
        obj = "chat.completion.chunk" if chat else "text_completion"

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            payload = {**head, "object": obj, "choices": choices, **extra}
            if include_usage and "usage" not in extra:
                payload["usage"] = None
            return f"data: {json.dumps(payload)}\n\n".encode()

        def choice(text: str, reason: str | None) -> dict[str, Any]:
            if chat:
                return {"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": reason,
                        "stop_reason": None}
            return {"index": 0, "text": text, "logprobs": None, "finish_reason": reason, "stop_reason": None}

        if chat:
            yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                          "finish_reason": None}])
        last = len(tokens) - 1
        idx = -1
        async for tok in self._tokens(tokens, usage["prompt_tokens"], arrival):
            idx += 1
            yield event([choice(tok, finish if idx == last else None)])
        if not tokens:
            yield event([choice("", finish)])
        self.metrics.success[finish] += 1
        if include_usage:
            yield event([], usage=usage)
        yield b"data: [DONE]\n\n"
