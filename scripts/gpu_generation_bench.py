"""Generation throughput of Flan-T5 (random weights) at the paper's GSM8K prompt lengths: the Table 1 evaluation cost.

    python3 scripts/gpu_generation_bench.py --arch flan-t5-xl --device cuda --out DIR    # part (f) of scripts/gpu_check.sh

Table 1's in-context evaluation feeds each GSM8K test question after an 8-shot chain-of-thought
prompt and decodes up to 255 new tokens greedily. Prompt lengths in T5 tokens, measured with the
real T5 SentencePiece model over the 1,319 test questions (`--measure-prompts`, which needs the
data directory; the GPU machine has none, so the figures are recorded here):
  prompt_complex.txt (the authors' Codex/Flan decode prompt) + question: min 2208, median 2243, max 2375;
  prompt_original.txt (8-shot, the base-model protocol) + question:       min 672,  median 707,  max 839.
Every batch decodes exactly `--new-tokens` tokens (min = max new tokens: random weights would stop
at arbitrary EOS otherwise). Reported per (prompt length, batch): seconds per batch (median of
`--repeats`, after one warm-up generate per shape), prompts/s, new tokens/s and the peak memory.
The architecture comes from `harness.train.bench` (declared once there). Writes generation.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

PROMPT_LENGTHS = {"complex-median": 2243, "complex-max": 2375, "original-median": 707}
DEFAULT_LENS = (2243,)
DEFAULT_BATCHES = (1, 16, 64)
NEW_TOKENS = 255


def _ints(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def parser() -> argparse.ArgumentParser:
    from harness.train.bench import ARCHS

    ap = argparse.ArgumentParser(prog="scripts/gpu_generation_bench.py", description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=list(ARCHS), default="flan-t5-xl")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--prompt-lens", type=_ints, default=DEFAULT_LENS, help="encoder tokens per prompt (default 2243)")
    ap.add_argument("--batches", type=_ints, default=DEFAULT_BATCHES, help="prompts per generate call (default 1,16,64)")
    ap.add_argument("--new-tokens", type=int, default=NEW_TOKENS, help="tokens decoded per prompt (default 255)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=False, help="output folder (generation.json, generation.md)")
    ap.add_argument("--measure-prompts", action="store_true", help="print the T5-token lengths of the GSM8K prompts (needs SPEC_DATA_DIR)")
    return ap


def measure_prompts() -> dict:
    import json as _json

    from harness import t5_tokenizer
    from harness.config import data_file

    tok = t5_tokenizer.load()
    questions = [_json.loads(line)["question"] for line in data_file("gsm8k/test.jsonl").read_text().splitlines() if line.strip()]
    out = {}
    for name in ("prompt_complex", "prompt_original"):
        prompt = data_file(f"prompts/{name}.txt").read_text()
        lens = sorted(len(tok(prompt + "\nQuestion: " + q + "\n")["input_ids"]) for q in questions)
        out[name] = {"min": lens[0], "median": statistics.median(lens), "max": lens[-1], "questions": len(lens)}
    return out


def run(a) -> dict:
    import torch
    from transformers import T5ForConditionalGeneration

    from harness.train.bench import t5_config

    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_generation_bench: --device cuda but no CUDA device is visible")
    dtype = getattr(torch, a.dtype) if device.type == "cuda" else torch.float32
    torch.manual_seed(a.seed)
    cfg = t5_config(a.arch)
    with torch.device(device):
        model = T5ForConditionalGeneration(cfg).to(dtype).eval()
    g = torch.Generator().manual_seed(a.seed)
    kw = dict(max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens, do_sample=False, num_beams=1)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    rows = []
    for length in a.prompt_lens:
        for batch in a.batches:
            row = {"prompt_tokens": length, "batch": batch, "new_tokens": a.new_tokens}
            try:
                ids = torch.randint(2, cfg.vocab_size - 128, (batch, length), generator=g).to(device)
                ids[:, -1] = cfg.eos_token_id
                mask = torch.ones_like(ids)
                with torch.inference_mode():
                    model.generate(input_ids=ids, attention_mask=mask, **dict(kw, max_new_tokens=2, min_new_tokens=2))  # warm-up
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(device)
                    times = []
                    for _ in range(a.repeats):
                        sync()
                        t0 = time.perf_counter()
                        out = model.generate(input_ids=ids, attention_mask=mask, **kw)
                        sync()
                        times.append(time.perf_counter() - t0)
                new = out.shape[1] - 1  # the decoder start token is not generated
                sec = statistics.median(times)
                row.update(seconds=sec, seconds_all=times, generated_per_prompt=new, prompts_per_s=batch / sec,
                           new_tokens_per_s=batch * new / sec,
                           peak_memory_bytes=int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None)
            except torch.cuda.OutOfMemoryError:
                row["skipped"] = "out of memory"
            except RuntimeError as e:
                if "out of memory" not in str(e).lower():
                    raise
                row["skipped"] = "out of memory"
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            rows.append(row)
            print(json.dumps(row), flush=True)
    import transformers

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})"
    meta = {"device": name, "arch": a.arch, "dtype": str(dtype).removeprefix("torch."), "weights": "random (seeded)",
            "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
            "git_commit": os.environ.get("GPU_CHECK_COMMIT", "unknown"), "repeats": a.repeats,
            "decoding": "greedy, exactly --new-tokens per prompt (min_new_tokens = max_new_tokens)",
            "prompt_lengths_measured": PROMPT_LENGTHS}
    return {"meta": meta, "rows": rows}


def render(result: dict) -> str:
    m = result["meta"]
    lines = [f"# Generation throughput: {m['arch']} (random weights), {m['dtype']}", "",
             f"Device: {m['device']} · torch {m['torch']} · transformers {m['transformers']} · commit `{m['git_commit'][:12]}`",
             f"Decoding: {m['decoding']}; median of {m['repeats']} generate calls per row after a warm-up.",
             "Prompt lengths: GSM8K test questions after the 8-shot prompt_complex.txt (Table 1's in-context protocol) "
             "measure 2208-2375 T5 tokens (median 2243); after prompt_original.txt 672-839 (median 707).", "",
             "| prompt tokens | batch | new tokens | s per batch | prompts/s | new tokens/s | peak GiB |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        head = f"| {r['prompt_tokens']} | {r['batch']} | {r['new_tokens']} |"
        if "skipped" in r:
            lines.append(f"{head} {r['skipped']} | | | |")
        else:
            peak = "—" if r["peak_memory_bytes"] is None else f"{r['peak_memory_bytes'] / 2**30:.1f}"
            lines.append(f"{head} {r['seconds']:.2f} | {r['prompts_per_s']:.2f} | {r['new_tokens_per_s']:.0f} | {peak} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = parser()
    a = ap.parse_args(argv)
    if a.measure_prompts:
        print(json.dumps(measure_prompts(), indent=1))
        return 0
    if a.out is None:
        ap.error("--out is required")
    if a.new_tokens < 1 or a.repeats < 1:
        ap.error("--new-tokens and --repeats must be >= 1")
    result = run(a)
    a.out.mkdir(parents=True, exist_ok=True)
    for name, text in (("generation.json", json.dumps(result, indent=1) + "\n"), ("generation.md", render(result))):
        tmp = a.out / (name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, a.out / name)
    print(f"gpu_generation_bench: wrote {a.out / 'generation.json'} and generation.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
