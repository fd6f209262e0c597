"""The floors follow the data (docs/architecture.md): raw -> data_prep -> recipe -> launch -> runs -> eval.

common/ is the ground floor and imports none of ours; data_prep stands on common; inference (a trained model, used)
stands on data_prep and imports neither eval, release nor launch; eval reads prepared data and run folders and uses
models through inference, and never imports launch; launch may rebuild a mixture (data_prep) and never imports eval
or inference; release (a run as a model to use) stands on top, and nothing imports it.
Imports are read with ``ast`` (those inside functions too), so a lazy import cannot hide a wrong floor or a cycle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "data_prep", "inference", "eval", "launch", "release")
ALLOWED = {  # package -> the packages of ours it may import (itself always)
    "common": set(),
    "data_prep": {"common"},
    "inference": {"common", "data_prep"},  # a trained model, used: below eval and release, beside launch
    "eval": {"common", "data_prep", "inference"},
    "launch": {"common", "data_prep"},
    "release": {"common", "data_prep", "inference", "eval", "launch"},  # the top floor: a run as a model to use
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def resolve(name: str) -> str | None:
    """The module of ours that ``name`` (a module or a name inside one) is, or None when it is not ours."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> set[str]:
    """The modules of ours that ``module`` imports, anywhere in its body."""
    path = MODULES[module]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(filter(None, (resolve(alias.name) for alias in node.names)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package
                package = module if path.name == "__init__.py" else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            for alias in node.names:
                target = resolve(f"{base}.{alias.name}") if f"{base}.{alias.name}" in MODULES else resolve(base)
                if target:
                    found.add(target)
    found.discard(module)
    return found


GRAPH = {module: imports(module) for module in MODULES}


def package(module: str) -> str:
    return module.split(".")[0]


def test_every_package_imports_only_the_floors_below_it():
    wrong = sorted(f"{m} imports {t}" for m, targets in GRAPH.items() for t in targets
                   if package(t) != package(m) and package(t) not in ALLOWED[package(m)])
    assert not wrong, "\n".join(wrong)


def test_data_prep_imports_neither_launch_nor_eval_and_eval_never_launch():
    assert not any(package(t) in {"launch", "eval"} for m, ts in GRAPH.items() if package(m) == "data_prep" for t in ts)
    assert not any(package(t) == "launch" for m, ts in GRAPH.items() if package(m) == "eval" for t in ts)
    assert GRAPH["data_prep.decontaminate"] and GRAPH["eval.run"]  # the parser found imports at all


def test_inference_stands_below_eval_and_release_and_launch_never_imports_it():
    wrong = sorted(f"{m} imports {t}" for m, ts in GRAPH.items() for t in ts
                   if (package(m) == "inference" and package(t) in {"eval", "release", "launch"})
                   or (package(m) == "launch" and package(t) == "inference"))
    assert not wrong, "\n".join(wrong)
    assert GRAPH["inference.reply"] and "inference.model_source" in GRAPH["eval.run"]  # the parser found them


def test_release_is_the_top_floor_nothing_imports_it():
    wrong = sorted(f"{m} imports {t}" for m, ts in GRAPH.items() if package(m) != "release" for t in ts
                   if package(t) == "release")
    assert not wrong, "\n".join(wrong)
    assert GRAPH["release.generate"]  # the parser found release's imports at all


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_package_graph_has_no_cycle():
    packages = {p: set() for p in PACKAGES}
    for m, targets in GRAPH.items():
        packages[package(m)].update(package(t) for t in targets if package(t) != package(m))
    assert cycle(packages) is None, cycle(packages)


def test_the_module_graph_has_no_cycle():
    assert cycle(GRAPH) is None, " -> ".join(cycle(GRAPH))


@pytest.mark.parametrize("graph, expected", [({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
                                             ({"a": {"b"}, "b": set()}, None)])
def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle(graph, expected):
    assert cycle(graph) == expected


# One name, one meaning. These names are shared on purpose: each module of a registry implements the same role
# (a source's ``convert``, a benchmark schema's ``load`` and ``item``, a command's ``main``, ``parse_args``, ``run``).
PROTOCOL_NAMES = {"main", "parse_args", "run", "convert", "load", "item", "prompt_turns", "read"}


def test_no_two_public_functions_share_a_name_outside_the_registries_protocols():
    defined: dict[str, list[str]] = {}
    for module, path in MODULES.items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_"):
                defined.setdefault(node.name, []).append(module)
    shared = {name: mods for name, mods in defined.items() if len(mods) > 1 and name not in PROTOCOL_NAMES}
    assert not shared, shared


def test_a_run_folders_manifest_is_written_by_one_function():
    """Only common.rundir.write_manifest writes ``<run>/manifest.json``; everything else calls it."""
    writers = ("write_json_atomic(", "atomic_writer(", "write_text(", "open(", "copyfile(")
    found = []
    for module, path in MODULES.items():
        if package(module) == "data_prep":  # a data build folder's manifest, not a run folder's
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if any(w in line for w in writers) and re.search(r'\bMANIFEST\b|"manifest.json"', line):
                found.append(f"{module}:{number}: {line.strip()}")
    assert [f.split(":")[0] for f in found] == ["common.rundir"], found
    assert "def write_manifest(" in MODULES["common.rundir"].read_text(encoding="utf-8")


def constructs_a_gguf_reader(source: str) -> bool:
    """Whether ``source`` calls gguf-py's ``GGUFReader`` (by any name it imports it as, or as ``gguf.GGUFReader``)."""
    tree = ast.parse(source)
    names = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
             and (node.module or "").split(".")[0] == "gguf" for alias in node.names if alias.name == "GGUFReader"}
    calls = [node.func for node in ast.walk(tree) if isinstance(node, ast.Call)]
    return any((isinstance(func, ast.Name) and func.id in names)
               or (isinstance(func, ast.Attribute) and func.attr == "GGUFReader") for func in calls)


def test_one_module_outside_the_tests_constructs_a_gguf_reader():
    """common.gguf_metadata reads GGUF metadata for every floor; inference.gguf_file.GGUFFile keeps what it read."""
    sources = {**MODULES, **{module_name(p): p for p in sorted((ROOT / "bench").rglob("*.py"))}}
    found = sorted(m for m, path in sources.items() if constructs_a_gguf_reader(path.read_text(encoding="utf-8")))
    assert found == ["common.gguf_metadata"], found


@pytest.mark.parametrize("source, expected", [
    ("from gguf import GGUFReader\nGGUFReader(p, 'r')", True),
    ("from gguf.gguf_reader import GGUFReader as Reader\nReader(p)", True),
    ("import gguf\ngguf.GGUFReader(p)", True),
    ("from gguf import GGUFReader  # named only\n", False),
])
def test_the_gguf_reader_finder_finds_a_construction_and_only_one(source, expected):
    assert constructs_a_gguf_reader(source) is expected


# launch/'s rooms (launch/__init__.py): what each may import of launch. Its top holds only the commands.
LAUNCH_TOP = {"launch", "launch.__main__", "launch.registry", "launch.cli"}
ROOMS = {  # room -> the rooms of launch it may import (itself always; common and data_prep by the package rule)
    "plugins": set(),
    "preflight": {"plugins", "registry"},
    "lifecycle": {"plugins", "registry"},
    "submit": {"plugins", "registry", "lifecycle", "preflight.pinning"},
    "runner": {"plugins", "registry", "lifecycle", "submit", "preflight"},
}


def room(module: str) -> str:
    """``launch.runner.stage`` -> ``runner``; the top's modules are their own (``registry``, ``cli``, ...)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def allowed(source: str, target: str) -> bool:
    """Whether launch module ``source`` may import launch module ``target`` under ROOMS."""
    if room(source) == room(target) or source in LAUNCH_TOP or target == "launch":
        return True
    granted = ROOMS[room(source)]
    return room(target) in granted or ".".join(target.split(".")[1:3]) in granted


def test_launch_top_holds_at_most_five_modules_and_every_room_is_a_folder_with_its_docstring():
    top = sorted(p.name for p in (ROOT / "launch").glob("*.py"))
    assert len(top) <= 5 and {f"launch.{p[:-3]}" for p in top} - {"launch.__init__"} <= LAUNCH_TOP, top
    folders = {p.parent.name for p in (ROOT / "launch").glob("*/__init__.py")}
    assert folders == set(ROOMS), folders  # every room has its rule, every rule its room
    for name in folders:
        doc = ast.get_docstring(ast.parse((ROOT / "launch" / name / "__init__.py").read_text(encoding="utf-8")))
        assert doc and "May import" in doc, f"launch/{name}/__init__.py says what it owns and what it may import"


def test_launch_rooms_import_only_what_their_rule_grants():
    wrong = sorted(f"{m} imports {t}" for m, targets in GRAPH.items() if package(m) == "launch"
                   for t in targets if package(t) == "launch" and not allowed(m, t))
    assert not wrong, "\n".join(wrong)
    rooms = {room(m) for m in GRAPH if package(m) == "launch"} - {"__init__", "__main__", "registry", "cli"}
    assert rooms == set(ROOMS), rooms  # no module outside a room


@pytest.mark.parametrize("source, target", [
    ("launch.preflight.check", "launch.runner.stage"),   # pre-flight does not import the runner
    ("launch.submit.slurm", "launch.preflight.plan"),    # submission does not import pre-flight's estimates
    ("launch.lifecycle.run", "launch.submit.slurm"),     # the run's owner starts no process
    ("launch.plugins.preempt", "launch.lifecycle.run"),  # plugins run inside Axolotl
])
def test_the_room_rule_refuses_a_wrong_import(source, target):
    assert not allowed(source, target)


def test_only_the_run_owner_changes_a_run_folder():
    """lifecycle.run is the one module that creates, locks or writes a run folder's manifest (and rundir below it)."""
    callers = ("write_manifest(", "RunLock.acquire(", "rundir.create(", "manifest.opening(", "manifest.closing(",
               "attempts.begin(", "attempts.mark_lost(")
    found = sorted({m for m, path in MODULES.items() if package(m) != "common" and m != "launch.lifecycle.run"
                    and any(c in path.read_text(encoding="utf-8") for c in callers)})
    assert found == [], found
    assert "class Run:" in MODULES["launch.lifecycle.run"].read_text(encoding="utf-8")
