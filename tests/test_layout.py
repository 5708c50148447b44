"""The test tree's own rules, checked on its source (ast, no imports):

1. no class is defined twice under tests/: a test double is written once, in tests/support;
2. no module under tests/ imports a test module or a conftest: fixtures reach the tests through
   conftest.py, shared code through tests/support;
3. no polling loop outside tests/support: a function (other than a test) whose loop sleeps
   until something holds is a wait helper, and there is one, :func:`tests.support.waits.wait_until`.
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parent
SUPPORT = TESTS / "support"

# Files another change is rewriting right now (a file, or every file under a directory/); their
# doubles and waits move to tests/support with that change (RecordingCaller three times,
# _NoAudio twice, a wait_for, a status poll). Remove an entry once its files follow the rules.
PENDING = (
    "tests/fuzz/test_realtime_events_fuzz.py",
    "tests/responder/core/test_call_controller.py",
    "tests/responder/engines/",
)


def _pending(name: str) -> bool:
    return any(name == p or (p.endswith("/") and name.startswith(p)) for p in PENDING)


@functools.cache
def _modules() -> dict[str, ast.Module]:
    return {
        path.relative_to(TESTS.parent).as_posix(): ast.parse(path.read_text(encoding="utf-8"), str(path))
        for path in sorted(TESTS.rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def _is_test_or_conftest(dotted: str) -> bool:
    return any(part.startswith("test_") or part == "conftest" for part in dotted.split("."))


def _sleeps(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "sleep"
        for n in ast.walk(node)
    )


def _polls(loop: ast.AST) -> bool:
    """A loop that sleeps until a condition holds: ``while <condition>``, ``while True`` with a way
    out, or ``for _ in range(n)`` attempts; not a sampler that runs until it is cancelled, nor a
    loop over received messages."""
    if isinstance(loop, ast.For):
        attempts = isinstance(loop.iter, ast.Call) and getattr(loop.iter.func, "id", "") == "range"
        return attempts and _sleeps(loop)
    if not isinstance(loop, ast.While) or not _sleeps(loop):
        return False
    forever = isinstance(loop.test, ast.Constant) and loop.test.value is True
    return not forever or any(isinstance(n, (ast.Return, ast.Break)) for n in ast.walk(loop))


def test_no_class_is_defined_twice() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                where[node.name].append(f"{name}:{node.lineno}")
    # a definition in a PENDING file does not count (yet)
    twice = {
        cls: places
        for cls, places in where.items()
        if sum(not _pending(place.split(":")[0]) for place in places) > 1
    }
    assert not twice, f"define each test double once, in tests/support: {twice}"


def test_no_module_imports_a_test_module_or_a_conftest() -> None:
    bad: list[str] = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                local = node.level > 0 or module.split(".")[0] == "tests"
                if local and _is_test_or_conftest(module):
                    bad.append(f"{name}:{node.lineno} {'.' * node.level}{module}")
            elif isinstance(node, ast.Import):
                bad += [
                    f"{name}:{node.lineno} {a.name}"
                    for a in node.names
                    if a.name.split(".")[0] == "tests" and _is_test_or_conftest(a.name)
                ]
    assert not bad, f"import shared code from tests/support instead: {bad}"


def test_no_polling_loop_outside_tests_support() -> None:
    loops: list[str] = []
    for name, tree in _modules().items():
        if name.startswith("tests/support/") or _pending(name):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name.startswith("test"):
                continue
            for loop in ast.walk(node):
                if _polls(loop):
                    loops.append(f"{name}:{loop.lineno} in {node.name}()")
                    break
    assert not loops, f"wait with tests.support.waits.wait_until: {loops}"


def test_the_rules_see_the_tree() -> None:
    """The checks above read real files: the support modules and this file are among them."""
    names = set(_modules())
    assert "tests/test_layout.py" in names and "tests/support/waits.py" in names
    assert SUPPORT.is_dir()
