"""Record a real OpenAI-compatible server's answers to the teacher client (run by hand, once).

    python -m llama_cpp.server --model default-teacher.gguf --n_ctx 512 --model_alias default-teacher --port 8011
    python -m tests.teacher.record_servers llama-cpp-python-0.3.36 http://localhost:8011/v1 \\
        --server llama-cpp-python --version 0.3.36 --launch "…" --model-note "…" --weights default-teacher.gguf \\
        --scenarios sample-completions sample-chat score prompt-too-long --raw max-tokens-0

Each scenario runs the real OpenAITeacher through a RecordingProxy; `--raw` sends a request the
client never sends (max_tokens=0) to document what the server does with it (long answers are
kept as a summary, and the replay server never serves them). Writes
tests/teacher/fixtures/servers/<name>.json. See docs/teacher-servers.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
from pathlib import Path

from tests.teacher.server_recordings import FIXTURES, MODEL, SCENARIOS, SCORE_PROMPT, RecordingProxy, forward, teacher

RAW = {
    # llama-cpp-python reads 0 as "no limit": it generates until the context is full
    "max-tokens-0": ("/v1/completions", {"model": MODEL, "prompt": SCORE_PROMPT, "max_tokens": 0, "temperature": 0}),
    # what the client used to send to score (transformers serve: HTTP 500, retried 9 times)
    "max-tokens-0-echo": ("/v1/completions", {"model": MODEL, "prompt": SCORE_PROMPT, "max_tokens": 0, "echo": True,
                                             "logprobs": 5, "temperature": 0}),
}
SUMMARY_OVER = 4000  # bytes: a longer raw answer is kept as a summary


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name", help="fixture name, e.g. llama-cpp-python-0.3.36")
    ap.add_argument("base_url", help="the real server, e.g. http://localhost:8011/v1")
    ap.add_argument("--server", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--launch", required=True, help="the command that started the server")
    ap.add_argument("--model-note", required=True, help="what model it served and how it was made")
    ap.add_argument("--weights", type=Path, help="the weights file served (its sha256 is recorded)")
    ap.add_argument("--source-weights", type=Path, help="the default teacher's model.safetensors it was made from")
    ap.add_argument("--scenarios", nargs="*", default=list(SCENARIOS), choices=list(SCENARIOS))
    ap.add_argument("--raw", nargs="*", default=[], choices=list(RAW))
    args = ap.parse_args(argv)
    outcomes, raw_exchanges = {}, []
    with RecordingProxy(args.base_url) as proxy:
        for name in args.scenarios:
            api, run = SCENARIOS[name]
            proxy.scenario = name
            try:
                run(teacher(proxy.base_url, api))
                outcomes[name] = "ok"
            except Exception as err:  # the outcome is what gets recorded
                outcomes[name] = f"{type(err).__name__}: {err}"
            print(f"{name}: {outcomes[name][:200]}")
    for name in args.raw:
        path, body = RAW[name]
        exchange = {"scenario": name, **forward(args.base_url, path, body)}
        if len(json.dumps(exchange.get("response", exchange.get("response_text")))) > SUMMARY_OVER:
            answer = exchange.pop("response")
            choice = answer["choices"][0]
            exchange["response_summary"] = {"usage": answer.get("usage"), "finish_reason": choice.get("finish_reason"),
                                            "text_characters": len(choice.get("text") or ""),
                                            "text_starts": (choice.get("text") or "")[:80]}
        raw_exchanges.append(exchange)
        print(f"{name}: HTTP {exchange['status']}")
    recording = {
        "server": args.server, "version": args.version, "launch": args.launch, "model": args.model_note,
        "weights_sha256": hashlib.sha256(args.weights.read_bytes()).hexdigest() if args.weights else None,
        "source_weights_sha256": hashlib.sha256(args.source_weights.read_bytes()).hexdigest() if args.source_weights else None,
        "recorded": dt.date.today().isoformat(), "client": "harness.teacher.openai_backend.OpenAITeacher",
        "outcomes": outcomes, "exchanges": proxy.exchanges + raw_exchanges,
    }
    FIXTURES.mkdir(parents=True, exist_ok=True)
    out = FIXTURES / f"{args.name}.json"
    out.write_text(json.dumps(recording, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")
    return out


if __name__ == "__main__":
    main()
