"""dvc.yaml tells the truth: each stage depends on exactly the code it runs and the params it reads.

A stage's code is the import closure of its `pipeline/<stage>.py` inside src/doggan, computed here from
the sources; its params are its module's `PARAMS` plus, from presets.yaml, each preset's sections that
those params read. Both are compared with dvc.yaml both ways: nothing missing, nothing extra.
"""

import ast
import importlib
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from doggan import presets
from doggan.stages import NAMES

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PRESETS_FILE = "src/doggan/presets.yaml"
DVC_YAML = YAML(typ="safe").load(ROOT / "dvc.yaml")


def module_path(name: str) -> Path | None:
    """The source file of module `name`, or None when it is not a module of ours (an attribute)."""
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imported_modules(path: Path) -> set[str]:
    """The doggan modules `path` imports anywhere (functions included), except under TYPE_CHECKING."""
    found: set[str] = set()
    pending = list(ast.parse(path.read_text()).body)
    while pending:
        node = pending.pop()
        if is_type_checking(node):
            continue
        pending.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("doggan"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("doggan"):
            found.add(node.module)
            found.update(
                f"{node.module}.{alias.name}"
                for alias in node.names
                if module_path(f"{node.module}.{alias.name}")
            )
    return found


def closure(script: Path) -> set[str]:
    """Repo-relative paths of every src/doggan file that running `script` imports, packages included."""
    seen: set[Path] = set()
    pending = [script]
    while pending:
        path = pending.pop()
        for name in imported_modules(path):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                found = module_path(".".join(parts[:i]))
                if found and found not in seen:
                    seen.add(found)
                    pending.append(found)
    return {str(p.relative_to(ROOT)) for p in seen}


def expected_preset_params(stage_params: tuple[str, ...]) -> set[str]:
    """presets.yaml keys the stage reads: `<preset>.<section>` for a section it reads whole,
    `<preset>.<section>.<key>` for a single key that a preset sets."""
    found = set()
    for name, preset in presets.PRESETS.items():
        for entry in stage_params:
            section, _, key = entry.partition(".")
            values = preset.values.get(section, {})
            if values and not key:
                found.add(f"{name}.{section}")
            elif key in values:
                found.add(f"{name}.{entry}")
    return found


def declared(stage: str) -> dict:
    return DVC_YAML["stages"][stage]


def test_every_stage_module_is_a_dvc_stage_and_back():
    assert set(DVC_YAML["stages"]) == set(NAMES)


@pytest.mark.parametrize("stage", NAMES)
def test_code_deps_are_the_import_closure(stage):
    script = f"pipeline/{stage}.py"
    code_deps = {d for d in declared(stage)["deps"] if d.endswith(".py")}
    expected = {script} | closure(ROOT / script)
    assert not expected - code_deps, f"{stage}: add to deps in dvc.yaml: {sorted(expected - code_deps)}"
    assert not code_deps - expected, f"{stage}: not imported, drop from deps: {sorted(code_deps - expected)}"


@pytest.mark.parametrize("stage", NAMES)
def test_params_are_what_the_stage_reads(stage):
    module = importlib.import_module(f"doggan.stages.{stage}")
    entries = declared(stage).get("params", [])
    keys = {entry for entry in entries if isinstance(entry, str)}
    files = {name: set(keys) for entry in entries if isinstance(entry, dict) for name, keys in entry.items()}
    assert keys == set(module.PARAMS), f"{stage}: dvc.yaml params {sorted(keys)} vs PARAMS {module.PARAMS}"
    preset_keys = expected_preset_params(module.PARAMS)
    assert files.get(PRESETS_FILE, set()) == preset_keys, f"{stage}: presets params should be {preset_keys}"
    assert set(files) <= {PRESETS_FILE}
    if preset_keys:
        assert {"train", "train.preset"} & set(module.PARAMS), (
            f"{stage}: a preset changes it, so it must read train.preset"
        )


@pytest.mark.parametrize("stage", NAMES)
def test_each_stage_records_its_effective_params(stage):
    outs = {next(iter(o)) if isinstance(o, dict) else o: o for o in declared(stage)["outs"]}
    entry = outs.get(f"reports/params/{stage}.yaml")
    assert isinstance(entry, dict) and entry[f"reports/params/{stage}.yaml"] == {"cache": False}
    assert "reports/params" in DVC_YAML["params"]


def test_closure_sees_imports_inside_functions_and_skips_type_checking(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from doggan.params import Params\n"
        "def f():\n    from doggan.scoring import mifid\n"
    )
    assert closure(script) == {
        "src/doggan/__init__.py",
        "src/doggan/scoring/__init__.py",
        "src/doggan/scoring/mifid.py",
    }


def import_graph() -> dict[str, set[str]]:
    """Each doggan module and the doggan modules it imports (anywhere in it, as `closure` reads them)."""
    modules = {}
    for path in (SRC / "doggan").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        graph[name] = set()
        for imported in imported_modules(path):
            while imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported not in (name, "doggan"):
                graph[name].add(imported)
    return graph


def test_no_module_imports_itself_back():
    """No import circle: a module reached from another never leads back to it (a depth-first search)."""
    graph = import_graph()
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, "import circle: " + " -> ".join((*path[path.index(name) :], name))
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, (*path, name))
        done.add(name)

    for name in sorted(graph):
        visit(name, ())
    assert {"doggan.training.loop", "doggan.training.report", "doggan.training.paths"} <= set(graph)
