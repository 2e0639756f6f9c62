"""The shape of the source tree: one-way imports, one config module, no private names across modules.

These read the source (AST), so they fail on the line that breaks a rule, with its path.
"""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

from ftbridge.cli.exit_codes import ExitCode, for_error
from ftbridge.cli.exit_codes import table as exit_code_table
from ftbridge.common import config
from ftbridge.common.errors import (
    CatalogCorruptError,
    CatalogUnavailableError,
    ConfigurationError,
    ConversionError,
    ConversionTimeoutError,
    PartitionLostError,
    UnknownConversionError,
)
from ftbridge.lineage import rows
from tests.syntax import parse

pytestmark = pytest.mark.core
ROOT = pathlib.Path(__file__).resolve().parents[2]
# Each folder of the repository and the name it installs under (pyproject's package-dir).
FOLDERS = {"ftbridge": "ftbridge", "lineage": "ftbridge.lineage", "chaos": "ftbridge.chaos"}
# The layers, lowest first. The base is what importing any ftbridge module runs first (the
# package's __init__, which loads the API lazily, and the error tree it re-exports) plus
# ftbridge.common; it imports no engine.
BASE = ("ftbridge", "ftbridge.errors", "ftbridge.common")
LAYERS = ("base", "lineage", "ftbridge", "chaos")
# Imports inside functions that are allowed, and why: the adapters load an engine only when a
# call needs it (and `check()` probes names), and two CLI commands start Ray and Spark, which
# the read-only commands must not pay for.
LAZY_ALLOWED = ("ftbridge/adapters/", "ftbridge/cli/main.py")


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for folder, installed in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((installed, *(parts[:-1] if parts[-1] == "__init__" else parts)))
            out[name] = path
    return out


def _layer(module: str) -> str:
    if module in BASE or module.startswith("ftbridge.common."):
        return "base"
    for room in ("lineage", "chaos"):
        if module == f"ftbridge.{room}" or module.startswith(f"ftbridge.{room}."):
            return room
    return "ftbridge"


def _imports(path: pathlib.Path, known: dict) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every import of one of our modules."""
    tree = parse(path)
    in_function = {id(n) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for n in ast.walk(fn)}
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                       for a in node.names]
        for target in targets:
            while target and target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in known:
                found.append((target, node.lineno, id(node) in in_function))
    return found


def _graph() -> dict[str, set[str]]:
    known = _modules()
    graph = {name: set() for name in known}
    for name, path in known.items():
        for target, _, _ in _imports(path, known):
            # Importing a.b.c runs a/__init__ and a/b/__init__ first - except the packages the
            # importer itself is in, which are already loading when it runs.
            own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                dep = ".".join(parts[:i])
                if dep in known and dep != name and (dep not in own or dep == target):
                    graph[name].add(dep)
    return graph


def test_no_import_cycle():
    graph = _graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_layers_point_one_way():
    """base (ftbridge.common) <- lineage <- ftbridge <- chaos: each layer imports only the ones
    below it and itself, so the library never imports the chaos harness."""
    graph = _graph()
    assert set(BASE) <= set(graph), f"a base module is missing: {sorted(set(BASE) - set(graph))}"
    wrong = [f"{name} ({_layer(name)}) imports {dep} ({_layer(dep)})" for name, deps in graph.items()
             for dep in deps if LAYERS.index(_layer(dep)) > LAYERS.index(_layer(name))]
    assert not wrong, wrong


def test_no_import_inside_functions_outside_the_allowed_places():
    known = _modules()
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {target}"
                 for path in known.values() for target, line, inside in _imports(path, known)
                 if inside and not str(path.relative_to(ROOT)).startswith(LAZY_ALLOWED)]
    engines = ("ray", "pyspark", "duckdb", "pyarrow", "py4j")
    for path in known.values():
        if str(path.relative_to(ROOT)).startswith(LAZY_ALLOWED):
            continue
        tree = parse(path)
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        mod = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                        if (mod or "").split(".")[0] in engines:
                            offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {mod}")
    assert not offenders, offenders


def test_no_private_name_crosses_a_module():
    offenders = []
    for path in _modules().values():
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ftbridge":
                offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {a.name}" for a in node.names
                              if a.name.startswith("_")]
    assert not offenders, offenders


def test_ftbridge_settings_are_read_only_in_the_config_module():
    """An FTBRIDGE_* name as a whole string is a read or a write of the environment."""
    name = re.compile(r"^FTBRIDGE_[A-Z0-9_]+$")
    offenders = []
    for path in _modules().values():
        if path == ROOT / "ftbridge" / "common" / "config.py":
            continue
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and name.match(node.value):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value}")
    assert not offenders, offenders


def test_settings_load_at_call_time_and_refuse_bad_values(monkeypatch):
    monkeypatch.setenv("FTBRIDGE_READ_MAX_RETRIES", "9")
    assert config.settings().read_max_retries == 9
    monkeypatch.setenv("FTBRIDGE_READ_MAX_RETRIES", "many")
    with pytest.raises(ConfigurationError, match="FTBRIDGE_READ_MAX_RETRIES .* must be an integer, got 'many'"):
        config.settings()
    monkeypatch.delenv("FTBRIDGE_READ_MAX_RETRIES")
    monkeypatch.setenv("FTBRIDGE_SPILL_WRITER", "rust")
    with pytest.raises(ConfigurationError, match="one of auto, python"):
        config.settings()
    monkeypatch.setenv("FTBRIDGE_SPILL_WRITER", "python")
    monkeypatch.setenv("FTBRIDGE_FETCH_TIMEOUT_S", "-1")
    with pytest.raises(ConfigurationError, match="a number >= 0"):
        config.settings()
    monkeypatch.delenv("FTBRIDGE_FETCH_TIMEOUT_S")
    monkeypatch.setenv("FTBRIDGE_RAY_LOG_TO_DRIVER", "off")
    cfg = config.settings(read_timeout_s=5.0)
    assert cfg.read_timeout_s == 5.0 and cfg.spill_writer == "python" and cfg.ray_log_to_driver is False
    with pytest.raises(ConfigurationError, match="unknown ftbridge settings"):
        config.settings(read_timeout=5)


def test_the_api_reference_shows_every_name_ftbridge_exports():
    import importlib

    import ftbridge
    import ftbridge.train

    page = (ROOT / "docs" / "reference" / "api.md").read_text()
    listed = set(re.findall(r"^\s+- (\w+)$", page, re.M))
    missing = sorted(set(ftbridge.__all__) - listed - {"__version__"})
    assert not missing, f"docs/reference/api.md does not list {missing}"
    # RunRecorder is RunRecorderMixin made a Ray Train callback; its docs are the mixin's.
    train_names = {"RunRecorderMixin" if n == "RunRecorder" else n for n in ftbridge.train.__all__} - {"POSITION_FILE"}
    assert train_names <= listed, f"docs/reference/api.md does not list {sorted(train_names - listed)}"
    # Each `::: module` block names members that module has (mkdocstrings would drop others silently).
    blocks = re.findall(r"^::: ([\w.]+)\n((?:[ \t]+.*\n)*)", page, re.M)
    assert len(blocks) >= 4
    for module_name, options in blocks:
        module = importlib.import_module(re.sub(r"^lineage\.", "ftbridge.lineage.", module_name))
        for name in re.findall(r"^\s+- (\w+)$", options, re.M):
            assert hasattr(module, name), f"api.md lists {name} under {module_name}, which has no such name"


def test_the_docs_show_every_setting_and_exit_code():
    settings_page = (ROOT / "docs" / "reference" / "settings.md").read_text()
    assert config.markdown_table() in settings_page, \
        "docs/reference/settings.md's table differs from `python -m ftbridge.common.config`: paste its output"
    catalog_page = (ROOT / "docs" / "reference" / "catalog.md").read_text()
    assert rows.markdown_tables() in catalog_page, \
        "docs/reference/catalog.md's tables differ from `python -m ftbridge.lineage.rows`: paste its output"
    cli_page = (ROOT / "docs" / "reference" / "cli.md").read_text()
    for line in exit_code_table().splitlines():
        code, meaning = line.split(" ", 1)
        assert re.search(rf"\|\s*{code}\s*\|\s*{meaning}\s*\|", cli_page), f"docs/reference/cli.md misses exit code {line!r}"


def _drawn_error_tree() -> list[tuple[int, str]]:
    """(depth, class name) of each line of the tree drawn in ftbridge/common/errors.py's docstring."""
    from ftbridge.common import errors

    out, base = [], None
    for line in (errors.__doc__ or "").splitlines():
        if base is None and line.strip().startswith("FtbridgeError"):
            base = len(line) - len(line.lstrip())
            out.append((0, "FtbridgeError"))
            continue
        match = re.match(r"^([│ ]*)[├└]── ([A-Z]\w+Error)\b", line)
        if base is not None and match:
            out.append(((len(match.group(1)) - base) // 4 + 1, match.group(2)))
    return out


def test_the_drawn_error_tree_is_the_class_tree():
    """The tree the errors page shows (the module docstring) has every error class, under its
    real parent."""
    from ftbridge.common import errors

    drawn = _drawn_error_tree()
    assert drawn and drawn[0] == (0, "FtbridgeError"), drawn
    parents, stack = {}, []
    for depth, name in drawn:
        del stack[depth:]
        parents[name] = stack[-1] if stack else None
        stack.append(name)
    classes = {name: cls for name, cls in vars(errors).items()
               if isinstance(cls, type) and issubclass(cls, errors.FtbridgeError)}
    assert set(parents) == set(classes), (sorted(set(classes) - set(parents)), sorted(set(parents) - set(classes)))
    mixins = {"TransientError", "TerminalError"}
    assert set(errors.__all__) == set(classes) | mixins, "errors.__all__ must list every error class"
    for name, cls in classes.items():
        real = next((b.__name__ for b in cls.__bases__ if issubclass(b, errors.FtbridgeError)), None)
        assert parents[name] == real, f"{name} is drawn under {parents[name]}, its class under {real}"


def test_exit_codes_follow_the_error_kind():
    assert for_error(PartitionLostError(conversion_id="c", partition=1, node_id=None, cause="x")) == ExitCode.DATA_LOST
    assert for_error(UnknownConversionError("no such id")) == ExitCode.BAD_INPUT
    assert for_error(CatalogCorruptError("not a catalog")) == ExitCode.BAD_INPUT
    assert for_error(ConfigurationError("bad")) == ExitCode.BAD_INPUT
    assert for_error(CatalogUnavailableError("busy")) == ExitCode.TRANSIENT
    assert for_error(ConversionTimeoutError("slow")) == ExitCode.TRANSIENT
    assert for_error(ConversionError("other")) == ExitCode.FAILED
    assert for_error(RuntimeError("not ours")) == ExitCode.FAILED
    assert len({int(c) for c in ExitCode}) == len(ExitCode)


def test_readme_is_the_front_door():
    """README stays what it is for (pitch, the two commands, an example, versions, links: at most
    12 KB); guides, references and figures live in docs/, and every local link in it resolves."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 12 * 1024, f"README.md is {len(readme.encode())} bytes; move sections to docs/"
    commands = re.findall(r"^(\./dev \w[\w-]*)", readme.split("## Two commands", 1)[1].split("\n## ", 1)[0], re.M)
    assert commands == ["./dev demo", "./dev test"], commands  # the two commands, in their block
    for target in re.findall(r"\]\(([^)#:]+)\)", readme):
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_the_source_reader_parses_again_only_after_the_interpreters_thread_race(monkeypatch):
    calls = []
    real = ast.parse

    def flaky(text):
        calls.append(text)
        if len(calls) == 1:
            raise SystemError("AST constructor recursion depth mismatch (before=120, after=70)")
        return real(text)

    monkeypatch.setattr(ast, "parse", flaky)
    assert isinstance(parse("x = 1\n"), ast.Module) and len(calls) == 2
    calls.clear()
    monkeypatch.setattr(ast, "parse", lambda text: (_ for _ in ()).throw(SystemError("something else")))
    with pytest.raises(SystemError, match="something else"):
        parse("x = 1\n")
