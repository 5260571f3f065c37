"""Run a part's command in this process, optionally allowing only the GPU machine's packages.

`python3 -m scripts.gpu_check _part [--check-args MOD:FUNC] -- ARGV... [--real REAL...]` runs ARGV
(`-m module ...` or `path.py ...`) with runpy; `--check-args` first parses the real run's
arguments with that parser (the dry run). The dry run starts parts with `python -S` and a
PYTHONPATH of `site_view` folders: the installed packages outside GPU_MACHINE_PACKAGES and their
dependencies (read from the installed packages' metadata here) are simply not there, so a part
that would need lm-eval, nox, liger-kernel or anything else the bare GPU machine lacks fails on
CPU too, naming the module.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import re
import runpy
import sys
from pathlib import Path

# Preinstalled on the project's GPU machines (Python 3.12): reports/kernels/README.md, "Docs".
GPU_MACHINE_PACKAGES = ("torch", "triton", "transformers", "accelerate", "pytest", "hypothesis", "pytest-benchmark", "pyarrow",
                        "numpy", "rich", "typer")
ROOT = Path(__file__).resolve().parents[2]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dependency_closure(names=GPU_MACHINE_PACKAGES) -> set[str]:
    """Normalised distribution names: `names` and their non-extra requirements, transitively."""
    seen, todo = set(), [_norm(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for req in reqs:
            if "extra ==" in req.replace('"', "'").replace("extra==", "extra =="):
                continue
            m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
            if m:
                todo.append(_norm(m.group(1)))
    return seen


def allowed_top_modules() -> set[str]:
    dists = dependency_closure()
    mods = {m for m, owners in md.packages_distributions().items() if any(_norm(o) in dists for o in owners)}
    repo = {p.stem if p.suffix == ".py" else p.name for p in ROOT.iterdir() if p.suffix == ".py" or (p.is_dir() and not p.name.startswith("."))}
    tests = {p.stem for p in (ROOT / "tests").rglob("*.py")}  # test helpers imported by bare name (kl_testutil, conftest)
    return mods | repo | tests | set(sys.stdlib_module_names) | set(sys.builtin_module_names) | {"__main__", "__mp_main__"}


def site_view(view: Path) -> list[str]:
    """A site-packages holding only the GPU machine's packages: symlinks, in `view`, to the allowed
    top-level modules (and their .libs folders) and to the allowed distributions' metadata of
    every site-packages folder on sys.path. Returns the folders to put on PYTHONPATH (with -S)."""
    dists, mods = dependency_closure(), allowed_top_modules()
    roots = [Path(p) for p in sys.path if p.endswith(("site-packages", "dist-packages")) and Path(p).is_dir()]
    out = []
    for i, root in enumerate(dict.fromkeys(roots)):
        folder = view / f"site{i}"
        folder.mkdir(parents=True, exist_ok=True)
        for entry in root.iterdir():
            name = entry.name
            if name.endswith((".dist-info", ".egg-info")):
                keep = _norm(name.split("-")[0]) in dists
            elif name.endswith(".pth") or name.startswith("__"):
                keep = False
            else:
                keep = name.split(".")[0] in mods
            if keep:
                (folder / name).symlink_to(entry)
        out.append(str(folder))
    return out


def keep_transformers_off_hf_kernels() -> bool:
    """This repo's top-level `kernels` package shadows Hugging Face's `kernels` (a dependency of
    transformers >= 5.25), and transformers imports the latter at `import transformers.models...`
    whenever its metadata says it is installed -- which then fails on our package. The project never
    uses Hugging Face's hub kernels, so transformers is told they are unavailable. True if patched."""
    try:
        md.version("kernels")  # Hugging Face's distribution; ours has none
    except md.PackageNotFoundError:
        return False
    if importlib.util.find_spec("transformers") is None:
        return False
    import transformers.utils as tu
    import transformers.utils.import_utils as iu

    def unavailable(*args, **kwargs) -> bool:
        return False

    iu.is_kernels_available = tu.is_kernels_available = unavailable
    return True


def run_argv(argv: list[str]) -> None:
    """`-m module args...` or `script.py args...`, as `python3` would run them."""
    if argv[:1] == ["-m"]:
        sys.argv = [argv[1]] + argv[2:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        sys.path.insert(0, str(Path(argv[0]).resolve().parent))
        runpy.run_path(argv[0], run_name="__main__")


def main(args: list[str]) -> int:
    check = None
    if "--check-args" in args:
        check = args[args.index("--check-args") + 1]
    argv = args[args.index("--") + 1:]
    if check:  # the dry run: the real arguments must parse
        real = argv[argv.index("--real") + 1:]
        argv = argv[:argv.index("--real")]
        module, func = check.split(":")
        parser = getattr(__import__(module, fromlist=[func]), func)()
        parser.parse_args(real[2:] if real[:1] == ["-m"] else real[1:])
        print(f"gpu_check: the real arguments parse: {' '.join(real)}", flush=True)
    if keep_transformers_off_hf_kernels():
        print("gpu_check: Hugging Face's `kernels` package is installed and shadowed by this repo's `kernels`; "
              "transformers is told it is unavailable (its hub kernels are not used here)", flush=True)
    try:
        run_argv(argv)
    except SystemExit as e:
        code = e.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
