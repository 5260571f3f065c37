"""Kernel microbenchmarks: `python -m kernels.bench` -> reports/kernels/sparse_kl.{md} + JSON.

GPU (default): forward+backward, forward-only and backward-only times and the peak extra memory of
the sparse top-K KL against eager PyTorch (log_softmax + gather), torch.compile of the same, the
authors' dense-target formula and Liger-Kernel's cross-entropy at the same shape (the speed-of-
light reference: one read and one write of the logits, like ours); the fused-linear head against
eager matmul + loss and eager matmul + our kernel (bf16, and fp32 under bf16 autocast); `--tune`
/ `--tune-around` a tile sweep. `--device cpu` is the CPU loss benchmark (`kernels.bench_cpu`);
`--compare ...` hands every argument to `kernels.bench_compare` (the regression gate).

Protocol (`bench_protocol`): at each shape every provider shares the same inputs and the
providers are interleaved round-robin, `--repeats` samples each (a sample = the median of a
`triton.testing.do_bench` block, L2 flushed between calls; backward-only: CUDA events around
`loss.backward()` after an untimed forward); rows give the median, p20/p80 and spread over the
samples. The machine's load is recorded; above `--max-load` nothing is written (`--force` writes
it marked as forced). `--plumbing` runs the same code on CPU at tiny shapes under
TRITON_INTERPRET=1 (the GPU check's --dry-run), marked as not a measurement.
Bandwidth is reported against a device-to-device copy measured in the same run (see bench_report).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from .bench_protocol import MAX_OTHER_FRACTION, LoadMeter, interleave, load_verdict, summary
from .bench_report import PENDING, bytes_moved, floor_bytes, pending_markdown, render_markdown  # noqa: F401  (re-exported)
from .reference import authors_dense_kl, dense_target_from_topk, eager_sparse_kl

OUT = Path("reports/kernels")
PAGE = "sparse_kl.md"
PASSES = ("fwd+bwd", "fwd", "bwd")
PROVIDERS = ("triton_inplace", "triton", "triton_two_kernel", "eager", "torch_compile", "dense_authors", "liger_ce")
QUICK = dict(ns=(16384,), vs=(32128,), ks=(5,))
FULL = dict(ns=(4096, 16384, 65536), vs=(32128, 131072), ks=(5, 20, 64))
TUNE_VS = (8000, 16000, 32128, 50257, 128256, 151936)
TUNE_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
# (block_v, num_warps, maxnreg, resident): every one compiles for sm_90 without spills (kernels.compile_report --sweep).
TUNE_REREAD = ((2048, 4, None), (4096, 8, None), (4096, 16, None), (8192, 8, None), (8192, 16, 40), (8192, 16, None),
               (8192, 32, None), (16384, 16, None), (16384, 32, None))
TUNE_RESIDENT_WARPS = (8, 16, 32)
AROUND_VS = (16000, 32128, 151936)  # --tune-around: a resident shape, the headline, the largest vocabulary
SAMPLE_WARMUP_MS, SAMPLE_REP_MS = 10, 40
LIGER_MISSING = "skipped: liger-kernel not installed (carry its wheel in .whl/: reports/kernels/README.md)"


class CudaClock:
    """Samples in ms on the GPU: do_bench blocks, event-timed backward, peak memory."""

    name = "cuda"

    def sample(self, fn) -> float:
        from triton.testing import do_bench

        return do_bench(fn, warmup=SAMPLE_WARMUP_MS, rep=SAMPLE_REP_MS, return_mode="median")

    def backward_sample(self, forward, leaves, reps: int = 10) -> float:
        flush = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
        times = []
        for _ in range(reps):
            for t in leaves:
                t.grad = None
            loss = forward()
            flush.zero_()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            loss.backward()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        return summary(times)["median"]

    def peak(self, fn, leaves) -> int:
        for t in leaves:
            t.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base

    def copy_bandwidth(self, nbytes: int = 1 << 30) -> float:
        src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
        dst = torch.empty_like(src)
        ms = self.sample(lambda: dst.copy_(src))
        del src, dst
        free_memory()
        return 2 * nbytes / (ms * 1e-3)

    def device_name(self) -> str:
        return torch.cuda.get_device_name()


class CpuClock(CudaClock):
    """The plumbing run's stand-in: wall-clock samples, no memory statistics."""

    name = "cpu"

    def sample(self, fn) -> float:
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3

    def backward_sample(self, forward, leaves, reps: int = 1) -> float:
        for t in leaves:
            t.grad = None
        loss = forward()
        return self.sample(loss.backward)

    def peak(self, fn, leaves):
        return None

    def copy_bandwidth(self, nbytes: int = 1 << 24) -> float:
        src = torch.empty(nbytes, dtype=torch.uint8)
        return 2 * nbytes / (self.sample(lambda: torch.empty_like(src).copy_(src)) * 1e-3)

    def device_name(self) -> str:
        return f"cpu (plumbing: {platform.machine()})"


def free_memory():
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def reason(e: BaseException) -> str:
    if isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower():
        return "skipped: out of memory"
    return f"failed: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"


def git_commit() -> str:
    """HEAD ("-dirty" when anything outside reports/ differs from it), or GPU_CHECK_COMMIT where the
    copy has no .git (the GPU machine's working tree)."""
    if os.environ.get("GPU_CHECK_COMMIT"):
        return os.environ["GPU_CHECK_COMMIT"]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", ".", ":(exclude)reports"], capture_output=True, text=True).stdout
        return head + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    info = {"torch": torch.__version__, "python": platform.python_version(), "cuda": torch.version.cuda}
    for key, dist in (("triton", "triton"), ("liger_kernel", "liger-kernel")):
        try:
            info[key] = version(dist)
        except PackageNotFoundError:
            info[key] = None
    return info


def liger_ce():
    """Liger's cross-entropy as a provider, or the reason it cannot be one. "Not installed" only
    when the package is absent; an error raised while importing it is reported as such."""
    try:
        spec = importlib.util.find_spec("liger_kernel")
    except ImportError:  # a finder refusing it (gpu_check --dry-run emulates a machine without it)
        spec = None
    if spec is None:
        return LIGER_MISSING
    try:
        from liger_kernel.transformers import LigerCrossEntropyLoss
    except Exception as e:  # noqa: BLE001  (installed, but its import fails: say so)
        return f"failed: liger-kernel is installed but importing it raised {type(e).__name__}: {str(e).splitlines()[0][:160]}"
    ce = LigerCrossEntropyLoss()
    return lambda x, ids, p: ce(x, ids[:, 0])


def loss_providers(names, compile_backend: str = "inductor") -> dict:
    """name -> fn(x, ids, p) returning a scalar loss, or a 'skipped: ...' string."""
    from .functional import sparse_topk_kl

    # x.view_as(x): a fresh view per call, since inplace=True refuses logits it already overwrote.
    table = {
        "triton_inplace": lambda x, ids, p: sparse_topk_kl(x.view_as(x), ids, p, inplace=True, validate=False, backend="triton"),
        "triton": lambda x, ids, p: sparse_topk_kl(x, ids, p, validate=False, backend="triton"),
        "triton_two_kernel": lambda x, ids, p: sparse_topk_kl(x, ids, p, reduction="none", inplace=True, validate=False,
                                                              backend="triton").sum(),
        "eager": eager_sparse_kl,
        "torch_compile": lambda: torch.compile(eager_sparse_kl, dynamic=False, backend=compile_backend),
        "dense_authors": lambda x, ids, p: authors_dense_kl(x, dense_target_from_topk(ids, p, x.shape[-1])),
        "liger_ce": liger_ce,
    }
    out = {}
    for name in names:
        fn = table[name]
        out[name] = fn() if name in ("torch_compile", "liger_ce") else fn
    return out


def _timed_unit(clock, fn, pass_, x, ids, p):
    """A function returning one sample (ms) of `fn` for `pass_`."""
    if pass_ == "fwd+bwd":
        def step():
            x.grad = None
            fn(x, ids, p).backward()
        return lambda: clock.sample(step), step
    if pass_ == "fwd":  # a training forward: the graph is built (ours writes the gradient here)
        return lambda: clock.sample(lambda: fn(x, ids, p)), lambda: fn(x, ids, p)
    return lambda: clock.backward_sample(lambda: fn(x, ids, p), [x]), lambda: fn(x, ids, p).backward()


def interleaved_rows(clock, units: dict, repeats: int, base: dict) -> list[dict]:
    """Warm each provider up (compiles happen here; a failure skips it), then interleave the rest."""
    rows, live, failed = {}, {}, {}
    for name, unit in units.items():
        if isinstance(unit, str):
            failed[name] = unit
            continue
        sample, warm = unit
        try:
            warm()
            live[name] = sample
        except Exception as e:  # noqa: BLE001  (OOM or a provider failing: record it, go on)
            failed[name] = reason(e)
        free_memory()

    def guarded(name):
        def run():
            if name in failed:
                return math.nan
            try:
                return live[name]()
            except Exception as e:  # noqa: BLE001
                failed[name] = reason(e)
                return math.nan
        return run

    samples = interleave({n: guarded(n) for n in live}, repeats, sample=lambda f: f(), warmup=0)
    for name in units:
        row = dict(base, provider=name)
        if name in failed:
            row["skipped"] = failed[name]
        else:
            s = summary([t for t in samples[name] if not math.isnan(t)])
            row.update(median_ms=s["median"], p20_ms=s["p20"], p80_ms=s["p80"], min_ms=s["min"], max_ms=s["max"],
                       spread_frac=s["spread_frac"], repeats=s["repeats"])
        rows[name] = row
    return list(rows.values())


def bench_loss(clock, ns, vs, ks, dtype, providers, passes, repeats, device, compile_backend) -> list[dict]:
    rows = []
    elem = torch.finfo(dtype).bits // 8
    for n in ns:
        for v in vs:
            for k in ks:
                torch._dynamo.reset()  # a fresh compile per shape, clear of dynamo's recompile limit
                provs = loss_providers(providers, compile_backend)
                x = ids = p = None
                try:
                    x = torch.randn(n, v, device=device, dtype=dtype).requires_grad_(True)
                    ids = torch.randint(0, v, (n, k), device=device)
                    p = torch.softmax(torch.randn(n, k, device=device), -1) * 0.9
                    for pass_ in passes:
                        base = {"kind": "loss", "N": n, "V": v, "K": k, "dtype": str(dtype).removeprefix("torch.")}
                        if pass_ != "fwd+bwd":
                            base["pass"] = pass_  # absent on forward+backward rows, so their keys match earlier results
                        units = {name: fn if isinstance(fn, str) else _timed_unit(clock, fn, pass_, x, ids, p) for name, fn in provs.items()}
                        got = interleaved_rows(clock, units, repeats, base)
                        if pass_ == "fwd+bwd":
                            for r in got:
                                if "skipped" not in r:
                                    peak = clock.peak(lambda: provs[r["provider"]](x, ids, p).backward(), [x])
                                    r.update(peak_extra_bytes=peak, peak_extra_over_logits=None if peak is None else peak / (n * v * elem),
                                             bytes_moved=bytes_moved(n, v, k, elem), floor_bytes=floor_bytes(n, v, elem))
                        rows += got
                        for r in got:
                            print(json.dumps(r), flush=True)
                except Exception as e:  # noqa: BLE001  (the shape itself does not fit: every row says so)
                    rows.append({"kind": "loss", "N": n, "V": v, "K": k, "dtype": str(dtype).removeprefix("torch."),
                                 "provider": "*", "skipped": reason(e)})
                finally:
                    x = ids = p = None
                    free_memory()
    return rows


def bench_fused_linear(clock, n, d, v, k, repeats, device) -> list[dict]:
    """fwd+bwd of the fused head vs eager matmul + our kernel vs eager matmul + eager loss, in bf16
    and with fp32 inputs under bf16 autocast (T5's case)."""
    from .functional import sparse_topk_kl
    from .fused_linear_sparse_kl import fused_linear_sparse_topk_kl

    provs = {
        "fused_linear_triton": lambda h, w, ids, p: fused_linear_sparse_topk_kl(h, w, ids, p, validate=False, backend="triton"),
        "matmul_triton": lambda h, w, ids, p: sparse_topk_kl(h @ w.t(), ids, p, inplace=True, validate=False, backend="triton"),
        "eager_matmul": lambda h, w, ids, p: eager_sparse_kl(h @ w.t(), ids, p),
    }
    rows = []
    for label, dtype, autocast in (("bfloat16", torch.bfloat16, False), ("float32+autocast-bf16", torch.float32, True)):
        h = w = ids = p = None
        try:
            h = torch.randn(n, d, device=device, dtype=dtype).requires_grad_(True)
            w = (torch.randn(v, d, device=device, dtype=dtype) / d**0.5).requires_grad_(True)
            ids = torch.randint(0, v, (n, k), device=device)
            p = torch.softmax(torch.randn(n, k, device=device), -1)

            def step(fn):
                h.grad = w.grad = None
                with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
                    loss = fn(h, w, ids, p)
                loss.backward()

            units = {name: (lambda fn=fn: clock.sample(lambda: step(fn)), lambda fn=fn: step(fn)) for name, fn in provs.items()}
            got = interleaved_rows(clock, units, repeats, {"kind": "fused_linear", "N": n, "d": d, "V": v, "K": k, "dtype": label})
            for r in got:
                if "skipped" not in r:
                    r["peak_extra_bytes"] = clock.peak(lambda: step(provs[r["provider"]]), [h, w])
            rows += got
        except Exception as e:  # noqa: BLE001
            rows.append({"kind": "fused_linear", "N": n, "d": d, "V": v, "K": k, "dtype": label, "provider": "*", "skipped": reason(e)})
        finally:
            h = w = ids = p = None
            free_memory()
    for r in rows:
        print(json.dumps(r), flush=True)
    return rows


def tune_configs(v: int, around: bool):
    """(block_v, num_warps, maxnreg, resident) candidates for V: the heuristic's first; the
    register-resident tile where V fits one (<= 16K), and the re-read tiles (all spill-free)."""
    from .tiles import RESIDENT_MAX, tile_config

    h = tile_config(v, interpreting=False)
    configs = [(h.block_v, h.num_warps, h.maxnreg, h.resident)]
    fits = 1 << (v - 1).bit_length()
    if fits <= RESIDENT_MAX:
        configs += [(fits, w, None, True) for w in TUNE_RESIDENT_WARPS]
    reread = TUNE_REREAD if not around else ((8192, 16, 40), (8192, 16, None), (4096, 8, None), (16384, 32, None))
    configs += [(b, w, r, False) for b, w, r in reread]
    seen, out = set(), []
    for c in configs:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


def bench_tune(clock, n, k, vs, dtypes, repeats, device, around: bool) -> list[dict]:
    """fwd+bwd of `triton_inplace` per tile configuration, interleaved per shape."""
    rows = []
    for dtype in dtypes:
        for v in vs:
            x = ids = p = None
            try:
                x = torch.randn(n, v, device=device, dtype=dtype).requires_grad_(True)
                ids = torch.randint(0, v, (n, k), device=device)
                p = torch.softmax(torch.randn(n, k, device=device), -1)
                units, meta = {}, {}
                for i, (bv, nw, mr, res) in enumerate(tune_configs(v, around)):
                    def step(bv=bv, nw=nw, mr=mr, res=res):
                        x.grad = None
                        _tuned_loss(x, ids, p, bv, nw, mr, res).backward()
                    name = f"c{i}"
                    units[name] = (lambda step=step: clock.sample(step), step)
                    meta[name] = {"block_v": bv, "num_warps": nw, "maxnreg": mr, "resident": res, "heuristic": i == 0}
                base = {"kind": "tune", "N": n, "V": v, "K": k, "dtype": str(dtype).removeprefix("torch.")}
                for r in interleaved_rows(clock, units, repeats, base):
                    r.update(meta[r["provider"]], provider="triton_inplace", floor_bytes=floor_bytes(n, v, torch.finfo(dtype).bits // 8))
                    rows.append(r)
                    print(json.dumps(r), flush=True)
            finally:
                x = ids = p = None
                free_memory()
    return rows


def _tuned_loss(x, ids, p, block_v, num_warps, maxnreg, resident):
    """`triton_inplace` (sum of the single pass, gradient written in place) with an explicit tile."""
    from .sparse_kl import KLOptions, SparseTopKKLFunction
    from .tiles import Tile

    opts = KLOptions(reduction="mean", inplace=True, tile=Tile(block_v, num_warps, resident, maxnreg))
    return SparseTopKKLFunction.apply(x.view_as(x), ids, p, None, None, opts, {"grad_enabled": torch.is_grad_enabled()})


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _names(allowed):
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(x.strip() for x in text.split(",") if x.strip())
        bad = [n for n in names if n not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(bad)}; choose from {', '.join(allowed)}")
        return names
    return parse


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m kernels.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: the CPU loss benchmark (kernels.bench_cpu)")
    ap.add_argument("--out", type=Path, default=OUT, help="output folder (default reports/kernels)")
    ap.add_argument("--quick", action="store_true", help="one shape (N=16K, V=32128, K=5) instead of the grid")
    ap.add_argument("--ns", type=_ints, help="rows N, comma-separated (overrides the grid)")
    ap.add_argument("--vs", type=_ints, help="vocabulary sizes V")
    ap.add_argument("--ks", type=_ints, help="teacher widths K")
    ap.add_argument("--providers", type=_names(PROVIDERS), default=PROVIDERS, help=f"subset of {','.join(PROVIDERS)}")
    ap.add_argument("--passes", type=_names(PASSES), default=PASSES, help="subset of fwd+bwd,fwd,bwd")
    ap.add_argument("--parts", type=_names(("loss", "fused", "tune")), default=("loss", "fused"),
                    help="loss,fused,tune (default loss,fused; --tune / --tune-around add tune)")
    ap.add_argument("--tune", action="store_true", help="the full tile sweep (V in 8000..151936 x bf16/fp16/fp32)")
    ap.add_argument("--tune-around", action="store_true", help="a small sweep around the heuristic (bf16, V in 16000, 32128, 151936)")
    ap.add_argument("--repeats", type=int, help="interleaved samples per provider and shape (default: 5 on the GPU, 7 on CPU)")
    ap.add_argument("--max-load", type=float, default=MAX_OTHER_FRACTION,
                    help="largest share of the machine's CPU time other processes may use (default 0.05)")
    ap.add_argument("--force", "--allow-load", dest="force", action="store_true",
                    help="write the results even above --max-load, marked as forced (--allow-load: the harness benches' name)")
    ap.add_argument("--plumbing", action="store_true", help="run the GPU code on CPU at tiny shapes (TRITON_INTERPRET=1); not a measurement")
    ap.add_argument("--threads", type=int, help="CPU mode: torch threads (default: torch's)")
    ap.add_argument("--no-reference", action="store_true", help="CPU mode: leave the slow reference out")
    return ap


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else list(argv)
    if "--compare" in args_list or "--promote" in args_list:
        from .bench_compare import main as compare_main

        return compare_main(args_list)
    ap = parser()
    args = ap.parse_args(args_list)
    if args.repeats is None:
        args.repeats = 7 if args.device == "cpu" and not args.plumbing else 5
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    args.command = "python -m kernels.bench " + " ".join(args_list)
    meta = {"versions": versions(), "git_commit": git_commit(), "timestamp": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": args.command}
    if args.device == "cpu" and not args.plumbing:
        from . import bench_cpu

        return bench_cpu.run(args, meta)
    if args.plumbing:
        if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
            ap.error("--plumbing needs TRITON_INTERPRET=1 before triton is imported")
        os.environ["TRITON_INTERPRET"] = "1"
        clock, device, compile_backend = CpuClock(), "cpu", "eager"
        shape = dict(ns=(4,), vs=(300,), ks=(5,))
        fused = dict(n=8, d=16, v=300, k=5)
        tune_n, tune_vs = 4, (300,)
    else:
        if not torch.cuda.is_available():
            readme = args.out / PAGE
            print("kernels.bench: no CUDA GPU is visible, so nothing was timed. Run `bash scripts/gpu_check.sh` "
                  "(or `python -m kernels.bench`) on an H100/H200.", file=sys.stderr)
            if not readme.exists() or "pending" in readme.read_text()[:400]:
                args.out.mkdir(parents=True, exist_ok=True)
                readme.write_text(pending_markdown())
                print(f"kernels.bench: wrote {readme} (marked pending).", file=sys.stderr)
            return 0
        os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")  # compile in this process: its CPU time is ours, not "other"
        clock, device, compile_backend = CudaClock(), "cuda", "inductor"
        shape = dict(QUICK if args.quick else FULL)
        fused = dict(n=16384, d=2048, v=32128, k=5)
        tune_n, tune_vs = 16384, None
    for key in ("ns", "vs", "ks"):
        if getattr(args, key):
            shape[key] = getattr(args, key)
    parts = set(args.parts) | ({"tune"} if args.tune or args.tune_around else set())
    result = {"meta": meta, "loss": [], "fused_linear": []}
    with LoadMeter() as load:
        meta.update(gpu=clock.device_name(), plumbing=args.plumbing, copy_bandwidth_bytes_per_s=clock.copy_bandwidth())
        meta["protocol"] = {"repeats": args.repeats, "interleaved": True,
                            "sample": "one wall-clock call (plumbing)" if args.plumbing else
                            f"the median of a do_bench block ({SAMPLE_WARMUP_MS} ms warm-up, {SAMPLE_REP_MS} ms of calls, L2 flushed)"}
        if "loss" in parts:
            result["loss"] = bench_loss(clock, shape["ns"], shape["vs"], shape["ks"], torch.bfloat16, args.providers, args.passes,
                                        args.repeats, device, compile_backend)
        if "fused" in parts:
            result["fused_linear"] = bench_fused_linear(clock, repeats=args.repeats, device=device, **fused)
        if "tune" in parts:
            around = not args.tune
            vs = tune_vs or (AROUND_VS if around else TUNE_VS)
            dtypes = (torch.bfloat16,) if around or args.plumbing else TUNE_DTYPES
            result["tune"] = bench_tune(clock, tune_n, 5, vs, dtypes, args.repeats, device, around)
    rec = load.record()
    keep, why = load_verdict(rec, args.max_load)
    meta.update(load=rec, load_ok=keep, load_reason=why, forced=not keep and args.force)
    if not keep and not args.force:
        print(json.dumps(result, indent=1))
        print(f"kernels.bench: NOT KEPT: {why}. Rerun on a quiet machine (or --force to keep it marked as forced).", file=sys.stderr)
        return 3
    return write(result, args.out)


def write(result: dict, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    stamp = result["meta"]["timestamp"].replace(":", "").replace("-", "")
    text = json.dumps(result, indent=1) + "\n"
    for name in (f"sparse_kl_{stamp}.json", "sparse_kl_latest.json"):
        tmp = out / (name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, out / name)
    tmp = out / (PAGE + ".tmp")
    tmp.write_text(render_markdown(result))
    os.replace(tmp, out / PAGE)
    print(f"kernels.bench: wrote {out / f'sparse_kl_{stamp}.json'}, sparse_kl_latest.json and {out / PAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
