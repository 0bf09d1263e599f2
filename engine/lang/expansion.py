"""How large rules become once their ``let``s are expanded inline, computed without expanding them.

The compiler expands every use of a let in place, so ``let a = b + b``, ``let b = c + c``, ...
doubles at every level: forty levels would be a trillion nodes, a hang and a memory blow-up in
the checker and the compiler.  Each let's expanded size is a linear function of the sizes of its
arguments (``base + sum(coefficient * argument size)``), computed once per let, so the size of any
rule is known in time linear in the rule text; the checker refuses a rule or let past
``MAX_EXPANSION`` nodes (E407) before it types or compiles anything.
"""

from __future__ import annotations

from ruledesk.grammar import ast

MAX_EXPANSION = 10_000  # AST nodes one rule or let may stand for once its lets are expanded
_CAP = MAX_EXPANSION * 1000  # sizes saturate here: past the limit, how far past does not matter

_Linear = tuple[int, tuple[int, ...]]  # (base size, size added per node of each argument)


class ExpansionSizes:
    """Expanded sizes of lets and rules; ``skip`` names lets that are never expanded (recursive or
    refused: they count as one node)."""

    def __init__(self, lets: dict[str, ast.Let], skip: frozenset[str] = frozenset()) -> None:
        self.lets = lets
        self.skip = set(skip)
        self._linear: dict[str, _Linear] = {}

    def of_let(self, name: str) -> int:
        """The size of a let's body expanded, with each parameter standing for a one-node argument."""
        base, coefficients = self._let(name)
        return min(base + sum(coefficients), _CAP)

    def of_rule(self, rule: ast.Rule) -> int:
        return min(self._plain(rule), _CAP)

    def _plain(self, node: object) -> int:
        """``_size`` outside any let (no parameters): the common case, kept cheap."""
        kind = node.__class__
        if kind is ast.Name:
            let = self.lets.get(node.id)
            if let is not None and let.params is None and node.id not in self.skip:
                return self._let(node.id)[0]
            return 1
        if kind is ast.Call:
            let = self.lets.get(node.func)
            args = [self._plain(arg) for arg in node.args]
            if let is not None and let.params is not None and node.func not in self.skip:
                base, per_arg = self._let(node.func)
                return base + sum(w * a for w, a in zip(per_arg, args)) + sum(args[len(per_arg):])
            return 1 + sum(args)
        total = 1
        for name in ast.child_fields(kind):
            value = getattr(node, name)
            if value.__class__ is tuple:
                for child in value:
                    if isinstance(child, ast.Node):
                        total += self._plain(child)
            elif isinstance(value, ast.Node):
                total += self._plain(value)
        return total

    def _let(self, name: str) -> _Linear:
        found = self._linear.get(name)
        if found is None:
            let = self.lets[name]
            params = let.params or ()
            self._linear[name] = (1, (0,) * len(params))  # a cycle (E401) ends here
            found = self._linear[name] = self._size(let.body, {p: i for i, p in enumerate(params)}, len(params))
        return found

    def _size(self, node: object, params: dict[str, int], count: int) -> _Linear:
        """(base, coefficients per parameter of the let being sized) of ``node`` expanded."""
        if isinstance(node, ast.Name):
            if node.id in params:
                return 0, tuple(int(i == params[node.id]) for i in range(count))
            let = self.lets.get(node.id)
            if let is not None and let.params is None and node.id not in self.skip:
                return self._let(node.id)[0], (0,) * count
            return 1, (0,) * count
        if isinstance(node, ast.Call):
            let = self.lets.get(node.func)
            args = [self._size(arg, params, count) for arg in node.args]
            if let is not None and let.params is not None and node.func not in self.skip:
                base, per_arg = self._let(node.func)
                total = base + sum(a[0] for a in args[len(per_arg):])
                coefficients = [sum(a[1][i] for a in args[len(per_arg):]) for i in range(count)]
                for weight, (arg_base, arg_coefficients) in zip(per_arg, args):
                    total += weight * arg_base
                    for i in range(count):
                        coefficients[i] += weight * arg_coefficients[i]
                return _saturate(total, coefficients)
            return _saturate(1 + sum(a[0] for a in args), [sum(a[1][i] for a in args) for i in range(count)])
        if not isinstance(node, ast.Node):
            return 0, (0,) * count
        var = getattr(node, "var", None) if isinstance(node, (ast.Quantifier, ast.Count, ast.Sum, ast.ForBlock)) else None
        inner = {k: v for k, v in params.items() if k != var} if var in params else params  # a binder hides a parameter
        base, coefficients = 1, [0] * count
        for name in ast.child_fields(type(node)):
            value = getattr(node, name)
            scope = params if name == "iterable" else inner
            for child in value if isinstance(value, tuple) else (value,):
                if isinstance(child, ast.Node):
                    child_base, child_coefficients = self._size(child, scope, count)
                    base += child_base
                    for i in range(count):
                        coefficients[i] += child_coefficients[i]
        return _saturate(base, coefficients)


def _saturate(base: int, coefficients: list[int]) -> _Linear:
    return min(base, _CAP), tuple(min(c, _CAP) for c in coefficients)
