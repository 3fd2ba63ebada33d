#!/usr/bin/env python3
"""Writes the seed corpora (fuzz/corpus/<target>/), each input taken from the project's own
tests: proxy/tests/it (raw requests), proxy/src/http1.rs (chunked bodies), proxy/src/sse/tests.rs
and the mock (events), proxy/src/usage/tests.rs and scan/tests.rs (JSON), examples/ and the
hydrenv render snapshots (configs). Rerun after changing a seed here; libFuzzer adds its own
finds only to a copy (scripts/fuzz.sh)."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent
CORPUS = ROOT / "corpus"
REPO = ROOT.parent

CHAT = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
CHAT_BODY = '{"messages":[{"role":"user","content":"hello there"}]}'
KEY = "client-key-1"


def chat_request(extra="", version="1.1"):
    return (f"POST {CHAT} HTTP/{version}\r\nhost: 127.0.0.1:8080\r\napi-key: {KEY}\r\n"
            f"x-request-id: first\r\ncontent-type: application/json\r\n"
            f"content-length: {len(CHAT_BODY)}\r\n{extra}\r\n{CHAT_BODY}")


CHUNKED_BODY = f"{len(CHAT_BODY):x}\r\n{CHAT_BODY}\r\n0\r\n\r\n"

REQUEST_HEAD = {
    "chat": chat_request(),
    "pipelined": chat_request() + chat_request().replace("first", "second"),
    "expect_continue": chat_request("expect: 100-continue\r\n")[: -len(CHAT_BODY)],
    "http10": chat_request(version="1.0"),
    "chunked": f"POST {CHAT} HTTP/1.1\r\nhost: x\r\napi-key: {KEY}\r\ntransfer-encoding: chunked\r\n\r\n{CHUNKED_BODY}",
    "length_and_chunked": f"POST {CHAT} HTTP/1.1\r\nhost: x\r\napi-key: {KEY}\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n{CHUNKED_BODY}",
    "http10_chunked": f"POST {CHAT} HTTP/1.0\r\nhost: x\r\napi-key: {KEY}\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n{CHUNKED_BODY}",
    "two_lengths": f"POST {CHAT} HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello",
    "gzip": f"POST {CHAT} HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n",
    "gzip_chunked": f"POST {CHAT} HTTP/1.1\r\napi-key: {KEY}\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n{CHUNKED_BODY}",
    "speech": f"POST /openai/deployments/tts/audio/speech?api-version=2024-10-21 HTTP/1.1\r\nhost: x\r\napi-key: {KEY}\r\ncontent-length: 2\r\n\r\n{{}}",
    "head": "HEAD /nope HTTP/1.1\r\nhost: x\r\n\r\n",
    "close": "GET /openai/v1/models HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive, Close\r\nX-Ms-Region: East US \r\n\r\n",
    "absolute_form": "GET http://x/openai/v1/models HTTP/1.1\r\nhost: x\r\n\r\n",
}

CHUNKED = {
    "one_chunk": CHUNKED_BODY,
    "extensions_trailers": "5\r\nhello\r\n6;name=v\r\n world\r\n0\r\ntrailer: 1\r\n\r\nNEXT",
    "two_chunks": "2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n",
    "big_sizes": "2bc\r\n" + "x" * 0x2BC + "\r\n0\r\n\r\n",
    "quoted_extension": '3;a="b\\"c";d\r\nabc\r\n0;e=f\r\n\r\n',
    "bare_lf": "3\nabc\n0\n\n",
    "upper_hex": "A\r\n0123456789\r\n00\r\n\r\n",
    "cut_short": "10\r\nonly part",
    "bad_size": "zz\r\nhello\r\n0\r\n\r\n",
    "negative": "-1\r\n",
    "too_many_digits": "10000000000000000\r\n",
    "no_crlf_after_data": "2\r\nabX0\r\n\r\n",
    # What the decoder reads though RFC 9112 refuses it (the `strict` feature's failures).
    "space_after_size": "3 \r\nabc\r\n0\r\n\r\n",
    "cr_cr_lf": "3\r\r\nabc\r\n0\r\n\r\r\n",
    "trailer_without_colon": "3\r\nabc\r\n0\r\nno colon\r\n\r\n",
    "several_trailers": "1\r\na\r\n0\r\nx-a: 1\r\nx-b:\t2 \r\n\r\nGET / HTTP/1.1\r\n\r\n",
}


def event(data):
    return f"data: {data}\n\n"


CHUNK = '{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"tok0 "},"finish_reason":null}],"usage":null}'
USAGE_CHUNK = '{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":8,"total_tokens":9}}'

SSE = {
    "chat_stream": event(CHUNK) + event(USAGE_CHUNK) + "data: [DONE]\n\n",
    "crlf": "data: a\r\n\r\ndata: b\r\n\r\n",
    "line_ends": "data: a\n\ndata: b\r\n\r\ndata: c\r\rdata: d\n\r\ndata: e\r\n\ndata: f\n\rdata: g\r",
    "fields": ": comment\nid: 7\nretry: 10\ndata: {}\n\n",
    "multi_line": 'data: {\ndata:  "a": 1\n: note\nid: 3\ndata: }\n\n',
    "event_names": "event: first\nevent: last\n\nevent:x\rdata:  two spaces\r\r",
    "throttled": 'data: {"error":{"code":"too_many_requests","message":"x"}}\n\n',
    "responses": 'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_1"}}\n\nevent: response.completed\ndata: {"type":"response.completed","response":{"id":"resp_1","usage":{"input_tokens":4,"output_tokens":6,"total_tokens":10}}}\n\n',
    "pretty": 'event: response.completed\ndata: {\ndata:   "a": 1,\ndata:   "b": []\ndata: }\n\n',
    "failed": 'event: response.failed\ndata: {"type":"response.failed","response":{"error":{"code":"server_error"}}}\n\n',
    "keepalive": ": keep-alive\n\n",
    "no_data": "data\ndata\n\nevent: only\n\n",
    "null_usage_middle": 'data: {"choices":[{"delta":{}}],"usage": null ,"x":1}\n\n',
}

JSON = {
    "chat_usage": '{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8,"prompt_tokens_details":{"cached_tokens":1},"completion_tokens_details":{"reasoning_tokens":2}}}',
    "responses_usage": '{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":4,"output_tokens":6,"total_tokens":10,"output_tokens_details":{"reasoning_tokens":1}}}}',
    "chunk": CHUNK,
    "usage_chunk": USAGE_CHUNK,
    "usage_in_string": '{"choices":[{"delta":{"content":"\\"usage\\":{\\"total_tokens\\":9}"}}],"usage":null}',
    "nested_usage": '{"usage":{"total_tokens":3},"data":[{"usage":{"total_tokens":9}}]}',
    "pretty": '{\n  "usage" :\n  {\n    "total_tokens" : 3\n  } ,\n  "x": {"usage": {"total_tokens": 9}}\n}\n',
    "escaped_key": '{"\\u0075sage":{"total_tokens":3}}',
    "duplicates": '{"usage":{"total_tokens":1},"usage":{"total_tokens":2}}',
    "odd_usage": '{"usage": { "note": "a \\"}\\" b", "x": [1, {"y": [2]}], "prompt_tokens" : 7 , "completion_tokens":1}}',
    "huge_counter": '{"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":1}}',
    "error": '{"error":{"code":"429","message":"Rate limit is exceeded.","type":"error"}}',
    "integer_code": '{"error":{"code":429}}',
    "created": '{"type":"response.created","response":{"id":"resp_67ccd2bed1ec8190b14f964abc054267","object":"response","status":"in_progress"}}',
    "scalars": '[true,false,null,-0,1.5e3,"caf\\u00e9\\ud83d\\ude00"]',
}


def config_snapshots():
    found = {}
    for snap in sorted((REPO / "hydrenv/tests/it/snapshots").glob("*.snap")):
        text = snap.read_text()
        match = re.search(r"==> gateway\.yaml[^\n]*<==\n(.*?)(?=\n==> |\Z)", text, re.S)
        if match and "backends:" in match.group(1):
            name = snap.stem.removeprefix("it__render__")
            found[name] = match.group(1).rstrip("\n") + "\n"
    return found


def backend(fields):
    return f"version: 1\nbackends:\n  - {{ name: a, {fields} }}\n"


CONFIG = {
    "example": (REPO / "examples/gateway.yaml").read_text(),
    "test_harness": "version: 1\nserver:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n\nbackends:\n  - name: a\n    endpoint: http://127.0.0.1:9\n    priority: 0\n    weight: 1\n    auth: { mode: api-key, api_key: backend-key }\nclients:\n  require_auth: true\n  consumers:\n    - { name: team-a, key: client-key-a }\n    - { name: team-b, key: client-key-b, lane: low }\n",
    "user_info": backend("endpoint: 'http://user:pw-SECRET@eus.example', auth: { mode: api-key, api_key: k }"),
    "bad_algorithm": backend("endpoint: 'https://x', auth: { mode: api-key, api_key: k }") + "balancer: { algorithm: fastest }\n",
    "bad_lane": backend("endpoint: 'https://x', auth: { mode: api-key, api_key: k }") + "clients: { consumers: [{ name: c, key: k, lane: middle }] }\n",
}
CONFIG.update(config_snapshots())

TARGETS = {
    "request_head": REQUEST_HEAD,
    "chunked": CHUNKED,
    "sse": SSE,
    "json_scan": JSON,
    "config": CONFIG,
}

for target, seeds in TARGETS.items():
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in seeds.items():
        (folder / f"seed-{name}").write_bytes(text.encode())
