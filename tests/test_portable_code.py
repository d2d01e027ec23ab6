"""Static rules that keep every pipeline runnable on any runner: no module-level state that
functions change (each worker process would hold its own copy), and no client created in a
DoFn's constructor (it would be pickled with the DoFn, or fail to be); clients belong in
``setup()``. The external worker pool tests (``test_portability.py``) check the same at run
time for the paths they run."""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'beam_pipelines'
MODULES = sorted(PACKAGE.rglob('*.py'))
MUTATORS = {
    'append',
    'extend',
    'add',
    'update',
    'setdefault',
    'pop',
    'popitem',
    'clear',
    'insert',
    'remove',
    'discard',
}
CONTAINERS = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)
CONTAINER_CALLS = {'dict', 'list', 'set', 'defaultdict', 'OrderedDict', 'Counter', 'deque'}
CLIENT_WORDS = ('connect', 'Redis', 'Session', 'from_url', 'Client', 'Pool')


def _name(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ''


def _module_containers(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            value = node.value
            mutable = isinstance(value, CONTAINERS) or (
                isinstance(value, ast.Call) and _name(value.func) in CONTAINER_CALLS
            )
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if mutable:
                names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names - {'__all__'}


def _mutations(tree: ast.Module, names: set[str]):
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        local = {a.arg for a in func.args.args + func.args.kwonlyargs}
        for node in ast.walk(func):
            if isinstance(node, ast.Global):
                yield node.lineno, f'global {", ".join(node.names)}'
            targets = []
            if isinstance(node, ast.Assign | ast.AugAssign | ast.Delete):
                targets = node.targets if not isinstance(node, ast.AugAssign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Subscript) and _name(t.value) in names - local:
                    yield node.lineno, f'{_name(t.value)}[...] changed'
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in MUTATORS
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in names - local
            ):
                yield node.lineno, f'{node.func.value.id}.{node.func.attr}()'


def test_no_function_changes_module_level_state():
    found = []
    for path in MODULES:
        tree = ast.parse(path.read_text())
        found += [
            f'{path.relative_to(PACKAGE)}:{line}: {what}'
            for line, what in _mutations(tree, _module_containers(tree))
        ]
    assert not found, 'module-level state changed: ' + '; '.join(found)


def _dofn_constructors(tree: ast.Module):
    for cls in ast.walk(tree):
        if isinstance(cls, ast.ClassDef) and any('DoFn' in _name(b) for b in cls.bases):
            for item in cls.body:
                if isinstance(item, ast.FunctionDef) and item.name == '__init__':
                    yield cls.name, item


def test_dofns_create_clients_in_setup_not_in_their_constructor():
    found, dofns = [], 0
    for path in MODULES:
        for cls, init in _dofn_constructors(ast.parse(path.read_text())):
            dofns += 1
            found += [
                f'{path.relative_to(PACKAGE)}:{node.lineno}: {cls}() calls {_name(node.func)}()'
                for node in ast.walk(init)
                if isinstance(node, ast.Call) and any(w in _name(node.func) for w in CLIENT_WORDS)
            ]
    assert dofns > 10  # the scan sees the project's DoFns
    assert not found, 'create clients in setup(): ' + '; '.join(found)


def test_the_rules_find_what_they_forbid():
    bad = ast.parse(
        'CACHE = {}\n'
        'def f(k):\n    CACHE[k] = 1\n    CACHE.setdefault(k, 2)\n'
        'def g():\n    global X\n'
        'class F(beam.DoFn):\n    def __init__(self):\n        self.c = redis.Redis()\n'
    )
    assert len(list(_mutations(bad, _module_containers(bad)))) == 3
    ((cls, init),) = list(_dofn_constructors(bad))
    assert cls == 'F' and any(
        isinstance(n, ast.Call) and _name(n.func) == 'Redis' for n in ast.walk(init)
    )
