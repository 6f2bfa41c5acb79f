"""Which code cells a grade depends on: grading runs those and skips the rest (``make grade --full`` runs all).

A graded notebook's score comes from its autograded test cells. Each test reads names that earlier cells bound
(``model``, the student's ``saliency_map``) and objects that earlier cells may have changed in place
(``model.train()``). :func:`needed_cells` walks the cells backwards from the last test and keeps a cell when

* it is in ``always``: the tests and the student's own code, which always runs (grading passes the solution cells
  and every cell the release does not have word for word), or
* it binds a name that a kept cell after it reads, or
* it may change in place an object that a kept cell after it reads (:func:`cell_names`: assigning to its
  attributes or items, calling a method that changes it, such as ``train`` or one ending in ``_``, calling it
  (a model's hooks), passing it to a function of the notebook or to one ending in ``_``, or ``backward`` where a
  kept cell after it reads gradients), or
* it cannot be resolved: it does not parse (a magic, say), or it uses ``exec``, ``eval``, ``globals``,
  ``import *`` and the like, which read or bind names no analysis sees. Such a cell also reads every name: every
  cell before a kept one of them is kept.

A function of the notebook reads and changes what its body does, wherever it is called; a parameter it calls is
what the calling cell gives it (a model given to it is called; a function given to it changes what it passes
that function), not the notebook's name the parameter may share. What is skipped draws,
prints and computes only for its reader: figures, tables, demonstrations on the demo set. State outside the
notebook's names (the global random generator, ``matplotlib``'s settings) is not followed: the course's tests and
hidden checks draw from generators they seed themselves, and the grades of the fabricated class are the same with
and without skipping (``tests/test_grading.py``).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from nbformat import NotebookNode

UNRESOLVABLE = frozenset({
    "exec", "eval", "compile", "globals", "locals", "vars", "__import__", "get_ipython", "__builtins__",
    "builtins", "sys", "importlib", "setattr", "delattr", "gc", "inspect", "ctypes", "IPython",
})
"""Names whose use hides which names a cell reads, binds or changes; a cell that uses one, imports a module of
that name, or touches an attribute of :data:`UNRESOLVABLE_ATTRIBUTES` cannot be resolved."""

UNRESOLVABLE_ATTRIBUTES = frozenset({"__dict__", "__globals__", "__builtins__", "__code__", "f_globals", "f_locals",
                                     "f_back"})

MUTATORS = frozenset({
    "train", "eval", "zero_grad", "step", "apply", "load_state_dict", "to", "cuda", "cpu", "half", "float",
    "double", "bfloat16", "type", "add_module", "append", "extend", "insert", "pop", "popitem", "clear", "update",
    "setdefault", "add", "discard", "remove", "sort", "reverse", "backward", "share_memory",
})
"""Methods that change the object they are called on (besides those ending in ``_`` and ``register_*``)."""

COPIES = frozenset({"deepcopy", "copy", "clone", "tolist", "item"})
"""Methods whose result shares nothing with what they are called on."""

GRADIENT_READERS = frozenset({"grad", "step", "clip_grad_norm_", "clip_grad_value_", "clip_grad_norm"})
"""Attributes through which code reads the gradients of leaves (``x.grad``, ``optimizer.step()``)."""

EVERYTHING = "*"
"""Stands for every name, in what an unresolvable cell reads, binds and changes."""


@dataclass(frozen=True)
class CallSite:
    """A call ``f(a, b.c, key=d)`` of a function by name: the names of each argument, in order and by keyword;
    ``spread``: it passes ``*args`` or ``**kwargs``, so which parameter gets what is not known."""

    function: str
    args: tuple[frozenset[str], ...]
    keywords: tuple[tuple[str, frozenset[str]], ...]
    spread: bool

    def given(self, parameter: str, function: CellNames) -> frozenset[str]:
        """The names whose objects ``parameter`` of ``function`` gets here: every argument's where that cannot be
        told (``*args`` or ``**kwargs`` on either side)."""
        keywords = dict(self.keywords)
        if self.spread or parameter == EVERYTHING or parameter in function.variadic or EVERYTHING in function.variadic:
            return self.everything()
        if parameter in keywords:
            return keywords[parameter]
        index = function.positional.index(parameter) if parameter in function.positional else len(self.args)
        return self.args[index] if index < len(self.args) else frozenset()

    def everything(self) -> frozenset[str]:
        """The names of every argument."""
        return frozenset().union(*self.args, *(names for _, names in self.keywords))


@dataclass
class CellNames:
    """What one code cell reads, binds and changes, by name."""

    reads: set[str] = field(default_factory=set)  # the names it may read before binding them (_free_reads)
    binds: set[str] = field(default_factory=set)  # the names it binds in the module's scope
    changes: set[str] = field(default_factory=set)  # names whose objects it may change in place, when it runs
    stores: set[str] = field(default_factory=set)  # names whose attributes or items it assigns (modules too)
    imports: set[str] = field(default_factory=set)  # the names it binds with an import
    functions: dict[str, CellNames] = field(default_factory=dict)  # its functions: what their bodies do
    parameters: set[str] = field(default_factory=set)  # a function's: its parameters' names
    positional: tuple[str, ...] = ()  # a function's: its positional parameters, in order
    variadic: frozenset[str] = frozenset()  # a function's: its ``*args`` and ``**kwargs`` (or EVERYTHING: a class)
    sites: list[CallSite] = field(default_factory=list)  # its calls of functions by name, with what each is given
    backward: bool = False  # it calls ``backward``: gradients accumulate in the leaves it reads
    reads_grad: bool = False  # it reads gradients: ``.grad``, an optimizer's ``step``, ``getattr``

    @classmethod
    def everything(cls) -> CellNames:
        return cls({EVERYTHING}, {EVERYTHING}, {EVERYTHING})


@functools.lru_cache(maxsize=4096)
def cell_names(source: str) -> CellNames:
    """What ``source`` reads, binds and changes; a cell that cannot be resolved: :data:`EVERYTHING`.

    Cached: every submission of a notebook shares the release's cells, so a grading worker parses each once. The
    result is shared between callers, who must not change it."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):  # a magic, a shell escape, broken code
        return CellNames.everything()
    names = CellNames()
    if any(_unresolvable(node) for node in ast.walk(tree)):
        return CellNames.everything()
    names.reads_grad = _reads_grad(tree)
    names.reads = _free_reads(tree)
    scope = _scope(tree)
    _effects(scope, names)
    for node in scope:
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names.binds.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.binds.add(node.name)
            body = CellNames(parameters=_parameters(node), reads_grad=_reads_grad(node))
            body.positional, body.variadic = _signature(node)
            _effects([n for statement in node.body for n in ast.walk(statement)], body)
            body.reads = _free_reads(node)
            names.functions[node.name] = body
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                names.binds.add(bound)
                names.imports.add(bound)
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            names.binds.add(node.name)
    for node in ast.walk(tree):  # bind in the module's scope from any depth
        if isinstance(node, ast.Global):
            names.binds.update(node.names)
        elif isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name):
            names.binds.add(node.target.id)
    return names


def _unresolvable(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id in UNRESOLVABLE
    if isinstance(node, ast.Attribute):
        return node.attr in UNRESOLVABLE_ATTRIBUTES
    if isinstance(node, ast.Import):
        return any(alias.name.split(".")[0] in UNRESOLVABLE for alias in node.names)
    if isinstance(node, ast.ImportFrom):
        modules = [(node.module or "").split(".")[0], *(alias.name for alias in node.names)]
        return any(name in UNRESOLVABLE or name == "*" for name in modules)
    return False


def _free_reads(node: ast.AST) -> set[str]:
    """The names ``node`` reads from the scope around it. In a function, class, lambda or comprehension: what it
    reads and does not bind itself (Python's rule). In a cell: what it may read before binding it for sure
    (``x = f(x)`` reads ``x``; ``x = 1; f(x)`` does not, nor does a loop's body read its own target; a binding in a
    branch does not count), with everything its functions read (they read when they are called)."""
    if isinstance(node, ast.Module):
        return _block_reads(node.body, frozenset())
    inside = [n for n in ast.walk(node) if n is not node]
    local = {n.id for n in inside if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        local |= _parameters(node)
    local -= {name for n in inside if isinstance(n, (ast.Global, ast.Nonlocal)) for name in n.names}
    loaded = {n.id for n in inside if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Store)}
    return loaded - local


def _block_reads(statements: list[ast.stmt], bound: frozenset[str]) -> set[str]:
    """What a block reads that is not in ``bound``, the names surely bound when it starts; each statement binds
    names for the ones after it (:func:`_bound_by`)."""
    reads: set[str] = set()
    for statement in statements:
        reads |= _statement_reads(statement, bound)
        bound = bound | _bound_by(statement)
    return reads


def _statement_reads(statement: ast.stmt, bound: frozenset[str]) -> set[str]:
    blocks: list[tuple[list[ast.stmt], frozenset[str]]] = []
    header: list[ast.AST] = []
    if isinstance(statement, (ast.For, ast.AsyncFor)):
        header = [statement.iter]
        blocks = [(statement.body, bound | _targets(statement.target)), (statement.orelse, bound)]
    elif isinstance(statement, (ast.With, ast.AsyncWith)):
        header = [item.context_expr for item in statement.items]
        targets = set().union(*(_targets(i.optional_vars) for i in statement.items if i.optional_vars))
        blocks = [(statement.body, bound | targets)]
    elif isinstance(statement, (ast.If, ast.While)):
        header = [statement.test]
        blocks = [(statement.body, bound), (statement.orelse, bound)]
    elif isinstance(statement, ast.Try) or type(statement).__name__ == "TryStar":
        blocks = [(statement.body, bound), (statement.orelse, bound), (statement.finalbody, bound)]
        blocks += [(h.body, bound | ({h.name} if h.name else set())) for h in statement.handlers]
        header = [h.type for h in statement.handlers if h.type]
    elif isinstance(statement, ast.Match):
        header = [statement.subject]
        blocks = [(case.body, bound) for case in statement.cases]
        header += [case.guard for case in statement.cases if case.guard]
    else:
        header = [statement]
    reads = set().union(*(_block_reads(block, inner) for block, inner in blocks)) if blocks else set()
    for part in header:
        for child in _scope(part):
            if isinstance(child, ast.Name) and not isinstance(child.ctx, ast.Store) and child.id not in bound:
                reads.add(child.id)
            elif child is not part and isinstance(child, _SCOPES) or child is part and isinstance(part, _SCOPES):
                reads |= _free_reads(child) - (bound if isinstance(child, _INLINE) else set())
    return reads


def _targets(target: ast.AST) -> frozenset[str]:
    return frozenset(n.id for n in ast.walk(target) if isinstance(n, ast.Name))


def _bound_by(statement: ast.stmt) -> frozenset[str] | set[str]:
    """The names a top-level statement binds for sure."""
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {statement.name}
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return {a.asname or a.name.split(".")[0] for a in statement.names}
    if isinstance(statement, ast.Assign) or isinstance(statement, ast.AnnAssign) and statement.value is not None:
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    if isinstance(statement, (ast.With, ast.AsyncWith)):
        return set().union(*(_targets(i.optional_vars) for i in statement.items if i.optional_vars))
    return set()


_INLINE = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
"""Scopes evaluated where they stand (a lambda's or function's body runs when called: it reads then)."""

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp,
           ast.GeneratorExp)


def _scope(tree: ast.AST) -> list[ast.AST]:
    """The nodes of ``tree`` that run in its own scope, not in a function's, lambda's, class's or comprehension's
    (a definition's name, decorators, defaults and bases are in the enclosing scope)."""
    found, todo = [], [tree]
    while todo:
        node = todo.pop()
        found.append(node)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            todo += [*node.decorator_list, *node.args.defaults, *filter(None, node.args.kw_defaults)]
        elif isinstance(node, ast.ClassDef):
            todo += [*node.decorator_list, *node.bases, *node.keywords]
        elif isinstance(node, ast.Lambda):
            todo += [*node.args.defaults, *filter(None, node.args.kw_defaults)]
        elif isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            todo.append(node.generators[0].iter)  # the rest is the comprehension's own scope
        else:
            todo.extend(ast.iter_child_nodes(node))
    return found


def _effects(nodes: Iterable[ast.AST], names: CellNames) -> None:
    """Add to ``names`` what ``nodes`` change in place and which names they call."""
    for node in nodes:
        if isinstance(node, (ast.Attribute, ast.Subscript)) and not isinstance(node.ctx, ast.Load):
            names.stores |= _root(node.value)  # model.fc = ..., images[0] = ..., numpy.allclose = ...
        elif isinstance(node, ast.AugAssign) and not isinstance(node.target, ast.Name):
            names.stores |= _root(node.target)
        elif isinstance(node, ast.Call):
            passed = set().union(*(_roots(arg) for arg in [*node.args, *(k.value for k in node.keywords)]))
            function = node.func
            if isinstance(function, ast.Attribute) and _mutator(function.attr):
                names.changes |= _root(function.value) | passed  # model.train(), nn.init.zeros_(w)
                names.backward |= function.attr == "backward"
            elif isinstance(function, ast.Name):  # a function of the notebook may change what it is given
                names.changes |= {f"{function.id}()"} | {f"{function.id}({root})" for root in passed}
                names.sites.append(CallSite(
                    function.id, tuple(frozenset(_roots(arg)) for arg in node.args if not isinstance(arg, ast.Starred)),
                    tuple((k.arg, frozenset(_roots(k.value))) for k in node.keywords if k.arg),
                    any(isinstance(arg, ast.Starred) for arg in node.args) or any(not k.arg for k in node.keywords)))


def _reads_grad(tree: ast.AST) -> bool:
    """Whether code may read the gradients ``backward`` accumulates: ``x.grad``, an optimizer's ``step``,
    gradient clipping, or ``getattr`` (any attribute)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in GRADIENT_READERS and not _is_autograd_grad(node):
            return True
        if isinstance(node, ast.Name) and node.id == "getattr":
            return True
    return False


def _is_autograd_grad(node: ast.Attribute) -> bool:
    """Whether ``node`` is ``autograd.grad`` (``torch.autograd.grad``): a function that returns new gradients and
    reads no ``.grad``."""
    owner = node.value
    name = owner.attr if isinstance(owner, ast.Attribute) else owner.id if isinstance(owner, ast.Name) else None
    return node.attr == "grad" and name == "autograd"


def _mutator(method: str) -> bool:
    return method in MUTATORS or method.startswith("register_") or (method.endswith("_") and
                                                                     not method.startswith("__"))


def _roots(node: ast.AST) -> set[str]:
    """Every name in an expression (what is passed to a function may share objects with any of them)."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _root(node: ast.AST) -> set[str]:
    """The names whose objects an expression that is changed in place may belong to: ``a`` of ``a.b[c].d``
    and of ``a.view(2, 3)[0]`` (a method's result may be a view), none of ``copy.deepcopy(a)`` or ``a.clone()``
    (a copy) nor of ``f(a)`` (a new object; of a function of the notebook: what it is given, as it may return
    it)."""
    while True:
        if isinstance(node, ast.Name):
            return {node.id}
        if isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
            node = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in COPIES:
                return set()
            node = node.func.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return {f"{node.func.id}({root})" for root in _roots(node)}  # resolved in _changes
        else:
            return _roots(node)


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> tuple[tuple[str, ...], frozenset[str]]:
    """A function's positional parameters in order, and its ``*args`` and ``**kwargs`` (a class: EVERYTHING)."""
    if isinstance(node, ast.ClassDef):
        return (), frozenset({EVERYTHING})
    args = node.args
    return tuple(a.arg for a in [*args.posonlyargs, *args.args]), frozenset(a.arg for a in (args.vararg, args.kwarg) if a)


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef) -> set[str]:
    if isinstance(node, ast.ClassDef):
        return {EVERYTHING}  # its methods receive what the instance is given
    args = node.args
    return {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg] if a}


def needed_cells(sources: Sequence[str | None], always: set[int]) -> set[int]:
    """The indices of the code cells to run, of ``sources`` (None: not a code cell): ``always`` (the tests and
    solution cells) and every cell before the last of them that they depend on (see the module's docstring)."""
    cells = {index: cell_names(source) for index, source in enumerate(sources) if source is not None}
    functions: dict[str, list[CellNames]] = {}
    for names in cells.values():
        for name, body in names.functions.items():
            functions.setdefault(name, []).append(body)
    data = set().union(*(n.binds - n.imports - set(n.functions) for n in cells.values())) if cells else set()
    needed: set[int] = set()
    later: set[str] = set()  # what the kept cells after the current one read
    gradients = False  # whether one of them reads gradients
    for index in sorted(cells, reverse=True):
        names = cells[index]
        changes = _changes(names, functions, data, gradients)
        if not (index in always or EVERYTHING in later or (names.binds | changes) & (later | {EVERYTHING})):
            continue
        needed.add(index)
        read = _reads(names, functions)
        later |= read
        gradients |= names.reads_grad or any(body.reads_grad for name in read for body in functions.get(name, ()))
    return needed


def _reads(names: CellNames, functions: dict[str, list[CellNames]]) -> set[str]:
    """What a cell reads, with what the functions of the notebook it reads read in turn."""
    read, todo = set(names.reads), list(names.reads)
    while todo:
        for body in functions.get(todo.pop(), ()):
            new = body.reads - read
            read |= new
            todo.extend(new)
    return read


def _changes(names: CellNames, functions: dict[str, list[CellNames]], data: set[str], gradients: bool) -> set[str]:
    """What a cell may change in place when it runs: its own changes; what a function of the notebook it calls
    changes (transitively), and what it is given if the function changes one of its parameters; calling a data
    object (a model: its hooks run): that object, what it is given, and what every function of the notebook
    changes; with ``backward``, where a later cell reads gradients (``gradients``), everything it reads. Only names of data count (a method of ``torch`` changes
    no module), but for attributes and items assigned, which count on any name (``numpy.allclose = ...``)."""
    changed = {name for name in names.changes if not name.endswith(")")}
    stored = set(names.stores)
    calls = [_call(name) for name in names.changes if name.endswith(")")]
    for site in names.sites:  # a function of the notebook that calls a parameter calls what this cell gives it
        for body in functions.get(site.function, ()):
            for inner in body.sites:
                if inner.function not in body.parameters:
                    continue

                def outer(names_: Iterable[str], body: CellNames = body, site: CallSite = site) -> set[str]:
                    """The cell's names for names of the function's scope (its parameters: what the cell gave)."""
                    return set().union(*(site.given(n, body) if n in body.parameters else {n} for n in names_))

                for given in site.given(inner.function, body):
                    calls.append((given, ""))
                    if given not in functions:  # an object called (a model): what it is given may change too
                        changed |= outer(inner.everything())
                    for called_body in functions.get(given, ()):  # a function: what it changes of its arguments
                        for parameter in _changed_parameters(called_body):
                            changed |= outer(inner.given(parameter, called_body))
    backward, seen = names.backward, set()
    while calls:
        called, argument = calls.pop()
        if called in functions:
            for body in functions[called]:
                if (body.changes | body.stores) & (body.parameters | {EVERYTHING}) or EVERYTHING in body.parameters:
                    changed.add(argument)
                if called not in seen:
                    changed |= {n for n in body.changes if not n.endswith(")")} - body.parameters
                    stored |= body.stores - body.parameters
                    # a parameter it calls is what its caller gives it (above), not a name of the notebook; called
                    # from a function or a hook, it may be any object: its hooks may run
                    calls += [call for call in map(_call, (n for n in body.changes if n.endswith(")")))
                              if call[0] not in body.parameters]
                    calls += [(function, "") for function in set(functions) - seen if _called_parameters(body)]
                    backward |= body.backward
            seen.add(called)
        elif called in data:  # calling an object: a model's forward and hooks
            changed |= {called, argument}
            calls += [(function, "") for function in set(functions) - seen]
    if backward and gradients:
        changed |= _reads(names, functions)
    return (changed & (data | {EVERYTHING})) | stored


def _called_parameters(body: CellNames) -> set[str]:
    """The parameters a function calls."""
    return {_call(name)[0] for name in body.changes if name.endswith(")")} & body.parameters


def _changed_parameters(body: CellNames) -> set[str]:
    """The parameters whose objects a function may change: those it changes, assigns to or calls (every one
    where it cannot be told)."""
    if EVERYTHING in body.parameters | body.changes | body.stores:
        return body.parameters | {EVERYTHING}
    return (body.changes | body.stores | _called_parameters(body)) & body.parameters


def _call(name: str) -> tuple[str, str]:
    """``("f", "x")`` of ``"f(x)"``: function ``f`` given (an object of) ``x``."""
    called, _, argument = name[:-1].partition("(")
    return called, argument


def needed_in(nb: NotebookNode, always: set[int], last: int) -> set[int]:
    """:func:`needed_cells` of a notebook's code cells up to index ``last``."""
    sources = [cell.source if cell.cell_type == "code" and index <= last else None
               for index, cell in enumerate(nb.cells)]
    return needed_cells(sources, always)
