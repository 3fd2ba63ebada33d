"""End-to-end check with the official openai SDK through the gateway.

Run by the proxy's integration test `sdk::official_openai_sdk_through_the_gateway` with
GATEWAY_URL and GATEWAY_KEY set; exits non-zero (with the reason) on the first failure.
"""

import base64
import os
import struct
import sys

from openai import AzureOpenAI, OpenAI

base = os.environ["GATEWAY_URL"].rstrip("/")
key = os.environ["GATEWAY_KEY"]
rounds = int(os.environ.get("SDK_ROUNDS", "3"))


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def exercise(name, client, model):
    for i in range(rounds):
        chat = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": f"hello number {i}"}]
        )
        check(chat.choices[0].message.content, f"{name}: empty chat answer")
        check(chat.usage.prompt_tokens > 0, f"{name}: chat usage missing")

        # Without include_usage the client gets exactly what it asked for, although the gateway
        # asks the backend for usage on its behalf: no usage-only chunk (empty choices), and no
        # "usage" member at all (the SDK's model_fields_set lists the keys the JSON had, so a
        # leaked "usage": null shows even though chunk.usage reads None either way).
        pieces = []
        stream = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "stream please"}], stream=True
        )
        for chunk in stream:
            check(chunk.usage is None, f"{name}: usage chunk leaked to a client that did not ask")
            check(chunk.choices, f"{name}: a chunk without choices (the usage-only chunk) leaked")
            check(
                "usage" not in chunk.model_fields_set,
                f"{name}: a 'usage' member leaked to a client that did not ask: {chunk.to_json()}",
            )
            if chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
        check(pieces, f"{name}: streaming chat produced no text")

        chunks = list(
            client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": "count me"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        usage = [c for c in chunks if c.usage is not None]
        check(
            len(usage) == 1 and usage[0].usage.total_tokens > 0 and usage[0].choices == [],
            f"{name}: asked-for usage chunk missing",
        )
        check(chunks[-1] is usage[0], f"{name}: the usage chunk is not the last one")

        emb = client.embeddings.create(model=model, input=["one", "two words"])
        check(len(emb.data) == 2 and len(emb.data[0].embedding) > 0, f"{name}: embeddings")
        # The SDK asks for base64 by default and decodes it; ask explicitly as well.
        raw = client.embeddings.create(model=model, input="x", encoding_format="base64")
        vec = raw.data[0].embedding
        if isinstance(vec, str):
            vec = struct.unpack(f"<{len(base64.b64decode(vec)) // 4}f", base64.b64decode(vec))
        check(len(vec) > 0, f"{name}: base64 embeddings")

        first = client.responses.create(model=model, input="first turn")
        check(first.output_text, f"{name}: responses output_text")
        second = client.responses.create(model=model, input="second turn", previous_response_id=first.id)
        check(second.id != first.id and second.output_text, f"{name}: chained response")
        fetched = client.responses.retrieve(first.id)
        check(fetched.id == first.id, f"{name}: retrieve response")

        events = []
        with client.responses.stream(model=model, input="stream a response") as rs:
            for event in rs:
                events.append(event.type)
            final = rs.get_final_response()
        check("response.output_text.delta" in events, f"{name}: no text deltas in {events}")
        check(events[-1] == "response.completed", f"{name}: the stream did not complete: {events}")
        check(final.usage is not None and final.usage.output_tokens > 0, f"{name}: streamed response usage")
        check(final.output_text, f"{name}: streamed response text")
        # The streamed response is remembered too: a follow-up on it reaches its backend.
        follow = client.responses.create(model=model, input="and then", previous_response_id=final.id)
        check(follow.output_text, f"{name}: a follow-up on a streamed response")
    print(f"{name}: ok ({rounds} rounds)")


legacy = AzureOpenAI(azure_endpoint=base, api_key=key, api_version="2025-04-01-preview", max_retries=0)
exercise("AzureOpenAI (legacy deployments)", legacy, "gpt-4o")

v1 = OpenAI(base_url=f"{base}/openai/v1/", api_key=key, max_retries=0)
exercise("OpenAI (v1)", v1, "gpt-4o")
