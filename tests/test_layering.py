"""Import rules: the core imports no stage, a stage imports no other stage, `kernels` never
imports `harness`, and within `harness` only the eval stage imports lm_eval."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = {"config", "errors", "resume", "records", "answers", "templates", "manifest", "checksums", "model_marker", "safe_pickle", "tokenizers",
        "t5_tokenizer", "mixing", "tiny_t5", "schemas", "rules", "handoff", "scoring", "config_files", "hub", "benchmarking", "__init__", "__main__"}
STAGES = {"data", "align", "eval", "teacher", "formats", "train", "report"}
# Core modules may use the data layer's constants/loaders: it is the shared foundation below the stages.
SHARED_STAGES = {"data"}
# Named cross-stage imports (none: what two stages share lives in the core).
ALLOWED: set[tuple[str, str]] = set()


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def owner(path: Path) -> str:
    rel = path.relative_to(ROOT / "harness")
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


HARNESS_FILES = sorted((ROOT / "harness").rglob("*.py"))


@pytest.mark.parametrize("path", HARNESS_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_harness_imports(path):
    me = owner(path)
    if me in ("cli", "__main__", "reproduce", "specialize"):
        return  # the CLI layer (cli, and reproduce: its table runner) imports every stage; __main__ just runs it
    for name in imports_of(path):
        parts = name.split(".")
        if parts[0] == "harness" and len(parts) > 1:
            target = parts[1]
            if target in STAGES and target != me and target not in SHARED_STAGES and (me, name) not in ALLOWED:
                pytest.fail(f"{path.relative_to(ROOT)} ({me}) imports stage {name}")
            if target == "cli":
                pytest.fail(f"{path.relative_to(ROOT)} imports the CLI")
        if parts[0] == "lm_eval" and me != "eval":
            pytest.fail(f"{path.relative_to(ROOT)} imports lm_eval outside the eval stage")
        if parts[0] == "kernels" and me != "train":
            pytest.fail(f"{path.relative_to(ROOT)} imports kernels (only the train stage may, via kernels.functional)")


@pytest.mark.parametrize("path", sorted((ROOT / "kernels").rglob("*.py")), ids=lambda p: p.name)
def test_kernels_never_import_harness(path):
    assert not any(n.split(".")[0] in ("harness", "tasks") for n in imports_of(path))


def test_no_import_cycles_between_harness_modules():
    """The module import graph (imports at module level, the ones that run on import) has no cycle."""
    import sys

    modules = {}
    for path in HARNESS_FILES:
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        tree = ast.parse(path.read_text())
        top = set()
        for node in tree.body:  # module level only: imports inside functions run later and cannot cycle at import
            if isinstance(node, ast.Import):
                top.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                top.add(node.module)
                top.update(f"{node.module}.{alias.name}" for alias in node.names)
        modules[name] = top
    graph = {m: {t for t in deps if t in modules and t != m} for m, deps in modules.items()}
    state: dict[str, int] = {}
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(m, trail):
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                pytest.fail("import cycle: " + " -> ".join(trail[trail.index(t):] + [t]) if t in trail else t)
            if not state.get(t):
                visit(t, trail + [t])
        state[m] = 2

    for m in sorted(graph):
        if not state.get(m):
            visit(m, [m])
