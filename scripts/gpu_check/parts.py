"""The GPU check's parts, in order of value, with their hard time limits and expected run times.

Each part is one command run as `python3 <argv>` from the repository root, in a process group of
its own (killed whole at the limit), with its output folder as the only place it writes. The
limits add up to the 8-minute budget on one H100 (first-time Triton and Inductor compilation
included); the expected times are estimates (no GPU has run this yet), to be replaced by the
measured ones in reports/kernels/README.md after the first run.
`dry_argv` is the same part at tiny sizes on CPU (the `--dry-run`); `check_args` names the
parser that must accept the real arguments there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

BUDGET_S = 470  # the parts' limits below add up to this: 8 minutes less ~10 s for the environment record

LOSS_PROVIDERS = "triton_inplace,triton,eager,torch_compile,liger_ce"


@dataclass(frozen=True)
class Part:
    key: str
    name: str
    title: str
    limit_s: int
    expected: str  # an estimate, labelled as such where it is shown
    argv: tuple[str, ...]  # after `python3`; "{out}" is the part's folder
    dry_argv: tuple[str, ...]
    check_args: str | None = None  # "module:function" returning an argparse parser for `argv`
    needs_cuda: bool = True
    kind: str = "command"  # pytest | kernel-bench | train-bench | generation
    outputs: tuple[str, ...] = field(default_factory=tuple)

    def command(self, out: Path, dry_run: bool) -> list[str]:
        return [a.replace("{out}", str(out)) for a in (self.dry_argv if dry_run else self.argv)]


BENCH = ("-m", "kernels.bench", "--out", "{out}", "--force")
PLUMB = ("-m", "kernels.bench", "--plumbing", "--out", "{out}", "--force", "--repeats", "1")
# Two repeats (each builds every provider's model afresh): the default 12 would not fit the part's
# limit at XL. --allow-load: minutes on a lent GPU are not rerun for a busy CPU; the page says so.
TRAIN = ("-m", "harness.train.bench", "--device", "cuda", "--steps", "4", "--warmup", "2", "--repeats", "2", "--allow-load",
         "--out", "{out}")
TRAIN_DRY = ("-m", "harness.train.bench", "--arch", "tiny", "--device", "cpu", "--steps", "1", "--warmup", "0", "--repeats", "1",
             "--allow-load", "--batch", "2", "--source-len", "16", "--target-len", "8", "--out", "{out}")

PARTS = (
    Part("a", "kernel-tests", "GPU kernel tests (`pytest -m gpu tests/kernels`)", 70,
         "~40-60 s (Triton compiles of every specialisation the tests launch)",
         ("-m", "pytest", "-q", "-m", "gpu", "tests/kernels", "-p", "no:cacheprovider", "--junitxml={out}/junit.xml"),
         ("-m", "pytest", "-q", "-m", "gpu", "tests/kernels", "-p", "no:cacheprovider", "--junitxml={out}/junit.xml"),
         needs_cuda=True, kind="pytest", outputs=("junit.xml",)),
    Part("b", "kernel-bench", "Kernel fwd / bwd / fwd+bwd, N=16K, K=5, bf16, V = 32128, 128256, 151936", 135,
         "~90-120 s (torch.compile per shape ~15-30 s, 3 interleaved repeats of 5 providers x 3 passes)",
         BENCH + ("--parts", "loss", "--ns", "16384", "--vs", "32128,128256,151936", "--ks", "5", "--providers",
                  LOSS_PROVIDERS, "--repeats", "3"),
         PLUMB + ("--parts", "loss", "--providers", LOSS_PROVIDERS),
         check_args="kernels.bench:parser", kind="kernel-bench", outputs=("sparse_kl_latest.json", "sparse_kl.md")),
    Part("c", "fused-linear", "Fused-linear head vs eager matmul + kernel (bf16; fp32 under bf16 autocast)", 40,
         "~20-30 s", BENCH + ("--parts", "fused", "--repeats", "3"), PLUMB + ("--parts", "fused"),
         check_args="kernels.bench:parser", kind="kernel-bench", outputs=("sparse_kl_latest.json", "sparse_kl.md")),
    Part("d", "tile-sweep", "Tile sweep around the heuristic (bf16, V = 16000, 32128, 151936)", 45,
         "~30-40 s (one compile per configuration)", BENCH + ("--parts", "tune", "--tune-around", "--repeats", "3"),
         PLUMB + ("--parts", "tune", "--tune-around"),
         check_args="kernels.bench:parser", kind="kernel-bench", outputs=("sparse_kl_latest.json", "sparse_kl.md")),
    Part("e1", "train-xl", "Training steps, Flan-T5-XL (random weights): ours x2, authors, HF Seq2SeqTrainer", 75,
         "~50-60 s (2 repeats x 4 model builds, 2 warm-up + 4 timed steps each)", TRAIN + ("--arch", "flan-t5-xl"), TRAIN_DRY,
         check_args="harness.train.bench:parser", kind="train-bench"),
    Part("e2", "train-large", "Training steps, Flan-T5-Large (random weights)", 45, "~25-35 s",
         TRAIN + ("--arch", "flan-t5-large"), TRAIN_DRY + ("--providers", "ours-sample"),  # (e1)'s dry run covers the rest
         check_args="harness.train.bench:parser", kind="train-bench"),
    Part("f", "generation", "Generation, Flan-T5-XL (random weights), 2243-token GSM8K prompts, 255 new tokens, batch 1/16/64", 60,
         "~35-45 s", ("scripts/gpu_generation_bench.py", "--arch", "flan-t5-xl", "--device", "cuda", "--out", "{out}"),
         ("scripts/gpu_generation_bench.py", "--arch", "tiny", "--device", "cpu", "--batches", "1,2", "--prompt-lens", "16",
          "--new-tokens", "4", "--repeats", "1", "--out", "{out}"),
         check_args="scripts.gpu_generation_bench:parser", kind="generation", outputs=("generation.json", "generation.md")),
)

assert sum(p.limit_s for p in PARTS) == BUDGET_S, "the parts' limits must add up to the budget"


def by_key(keys: str | None) -> list[Part]:
    if not keys:
        return list(PARTS)
    wanted = [k.strip() for k in keys.split(",") if k.strip()]
    known = {p.key: p for p in PARTS}
    bad = [k for k in wanted if k not in known]
    if bad:
        raise ValueError(f"--parts: unknown {', '.join(bad)}; choose from {', '.join(known)}")
    return [known[k] for k in wanted]
