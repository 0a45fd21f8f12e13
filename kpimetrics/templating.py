"""The sandboxed Jinja environment for models and templated YAML values.

`source`, `ref`, `var` and `env_var` are the only names a template sees.
Undefined names are errors, and the sandbox refuses attribute escapes such as
`''.__class__.__mro__`. Errors carry the template's file and line.
"""
from __future__ import annotations

import ast
import itertools
import json
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import jinja2
from jinja2.nativetypes import NativeCodeGenerator
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from .config import SecretRegistry
from .errors import Issue, Location, error


class TemplateProblem(Exception):
    def __init__(self, code: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


@dataclass
class TemplateContext:
    """The functions a template may call. Each render records what it used."""

    vars: dict[str, Any]
    secrets: SecretRegistry
    source_fn: Callable[[str, str], str] | None = None
    ref_fn: Callable[[str], str] | None = None
    used_vars: dict[str, Any] = field(default_factory=dict)
    used_env: set[str] = field(default_factory=set)

    def var(self, name: str, default: Any = ...) -> Any:
        if name in self.vars:
            value = self.vars[name]
        elif default is not ...:
            value = default
        else:
            raise TemplateProblem(
                "KPI060",
                f"var('{name}') is not defined",
                "define it under `vars:` in kpimetrics.yml, pass --vars, or give a default: var('x', 'default')",
            )
        self.used_vars[name] = value
        return value

    def env_var(self, name: str, default: Any = ...) -> str:
        self.used_env.add(name)
        if name in os.environ:
            value = os.environ[name]
            for form in renderings(value):
                self.secrets.add(form)
            return value
        if default is not ...:
            return default
        raise TemplateProblem(
            "KPI061",
            f"environment variable '{name}' is not set",
            f"export {name}=... before running, or give a default: env_var('{name}', 'default')",
        )

    def source(self, source_name: str, table_name: str) -> str:
        if self.source_fn is None:
            raise TemplateProblem("KPI062", "source() is not available here")
        return self.source_fn(source_name, table_name)

    def ref(self, *args: Any, **kwargs: Any) -> str:
        """ref('model'), and as dbt writes it: ref('package', 'model'), ref('model', v=2) (or version=2)."""
        if self.ref_fn is None:
            raise TemplateProblem("KPI062", "ref() is not available here")
        unknown = set(kwargs) - {"v", "version"}
        if unknown or not 1 <= len(args) <= 2:
            raise TemplateProblem("KPI031", "ref() takes a model name, or a package and a model name, and v= or "
                                            f"version= (got {len(args)} name(s){', ' + ', '.join(sorted(unknown)) if unknown else ''})")
        return self.ref_fn(*args, **kwargs)


def renderings(value: str) -> set[str]:
    """Every form a secret takes on its way out: as it is, in a SQL string literal ('' and \\' escapes) or quoted
    identifier (""), in JSON (run_results.json, --log-format json) and in a Python repr (tracebacks). Each form is
    masked, so a secret holding a quote cannot slip past the mask escaped."""
    forms = {value, value.replace("'", "''"), value.replace('"', '""'),
             value.replace("\\", "\\\\").replace("'", "\\'"), repr(value)[1:-1],
             json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    return {f for f in forms if f}


MAX_REPEAT = 100_000  # items or characters a `*` may produce
MAX_POWER_BITS = 10_000  # bits an integer `**` may produce


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's sandbox (no attribute escapes, no mutation), which also refuses the one-line ways to exhaust
    memory or time: `'x' * 10**9`, `[0] * 10**8`, `9 ** 9 ** 9`. (A template that loops for ever is not
    stopped: models are code from the project's repository, reviewed like any other.)"""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_REPEAT:
                    raise SecurityError(f"a repetition of {n} times is too large (more than {MAX_REPEAT} items)")
        elif isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            if right * abs(left).bit_length() > MAX_POWER_BITS:
                raise SecurityError(f"the power {left} ** {right} is too large")
        return super().call_binop(context, operator, left, right)


# Jinja's own globals (range, dict, lipsum, cycler, joiner, namespace): not part of what a template may use
JINJA_GLOBALS = frozenset(jinja2.defaults.DEFAULT_NAMESPACE)


# dbt's filters for profile values (`{{ env_var('PORT') | as_number }}`). Each marks its text with the type the
# value is to have; in a native render (profiles: `render(..., native=True)`) a value that is one marked
# expression becomes that Python value, as in dbt. Elsewhere they are the text itself.
class _Text(str):
    pass


class _Native(str):
    pass


class _Bool(_Native):
    pass


class _Number(_Native):
    pass


DBT_FILTERS = {"as_text": _Text, "as_native": _Native, "as_bool": _Bool, "as_number": _Number}


def _native_concat(nodes) -> Any:
    """dbt's rule for a profile value: the text, unless it is one expression marked by as_native, as_bool or
    as_number, which becomes the Python value it spells (a bool, a number, or any literal)."""
    head = list(itertools.islice(nodes, 2))
    if len(head) != 1 or not isinstance(head[0], _Native):
        return "".join(str(v) for v in itertools.chain(head, nodes))
    raw = head[0]
    text = raw.strip()
    if isinstance(raw, _Bool) and text.lower() in ("true", "false"):  # an environment's `true` too, not only `True`
        return text.lower() == "true"
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        value = str(raw)
    # never the value itself in a message: it may be a secret
    if isinstance(raw, _Bool) and not isinstance(value, bool):
        raise TemplateProblem("KPI086", f"as_bool: the value ({len(raw)} characters) is not true or false",
                              "make the value true or false, or drop `| as_bool`")
    if isinstance(raw, _Number) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise TemplateProblem("KPI086", f"as_number: the value ({len(raw)} characters) is not a number",
                              "make the value a number, or drop `| as_number`")
    return value


def _environment(native: bool = False) -> ImmutableSandboxedEnvironment:
    env = (_NativeSandbox if native else _Sandbox)(undefined=jinja2.StrictUndefined, autoescape=False,
                                                   keep_trailing_newline=True, cache_size=0)
    env.globals.clear()  # the names a template sees are the four of TemplateContext, given at render time
    env.filters.update(DBT_FILTERS)
    return env


class _NativeSandbox(_Sandbox):
    """The sandbox that keeps an expression's value as it is (no str()), for dbt's marked profile values."""

    code_generator_class = NativeCodeGenerator
    concat = staticmethod(_native_concat)


_ENV = _environment()
_NATIVE_ENV = _environment(native=True)


def _template_line(tb, filename: str) -> int | None:
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render(text: str, ctx: TemplateContext, location: Location, *, native: bool = False) -> tuple[Any, list[Issue]]:
    """Render `text`; on failure return None and an issue at the template's line.

    `location` is where the text starts (a model file's line 1, or a YAML value);
    template line N maps to location.line + N - 1. `native` (profile values): a value that is one expression
    marked by dbt's as_number, as_bool or as_native is that Python value, not text.
    """
    if "{" not in text:
        return text, []
    env = _NATIVE_ENV if native else _ENV
    filename = f"<kpimetrics:{location.path}>"

    def at(line: int | None) -> Location:
        if not line:
            return location
        return Location(location.path, location.line + line - 1, 1 if line > 1 else location.col)

    try:
        code = env.compile(text, name=filename, filename=filename)
        template = jinja2.Template.from_code(env, code, env.make_globals(None))
    except jinja2.TemplateSyntaxError as exc:
        return None, [error("KPI063", f"Jinja syntax error: {exc.message}", at(exc.lineno))]
    names = {"var": ctx.var, "env_var": ctx.env_var, "source": ctx.source, "ref": ctx.ref}
    try:
        return template.render(**names), []
    except TemplateProblem as exc:
        line = _template_line(sys.exc_info()[2], filename)
        return None, [error(exc.code, exc.message, at(line), exc.hint)]
    except SecurityError as exc:
        line = _template_line(sys.exc_info()[2], filename)
        return None, [
            error("KPI064", f"Jinja sandbox refused an unsafe operation: {ctx.secrets.scrub(str(exc))}", at(line),
                  "templates may only call source(), ref(), var() and env_var()")
        ]
    except jinja2.UndefinedError as exc:
        line = _template_line(sys.exc_info()[2], filename)
        name = re.fullmatch(r"'(\w+)' is undefined", exc.message or "")
        if name and name.group(1) in JINJA_GLOBALS:
            return None, [error("KPI064", f"Jinja sandbox refused '{name.group(1)}': Jinja's default globals are not "
                                          "available in kpimetrics templates", at(line),
                                "templates may only call source(), ref(), var() and env_var()")]
        return None, [
            error("KPI065", f"Jinja error: {ctx.secrets.scrub(exc.message or '')}", at(line),
                  "templates may only use source(), ref(), var() and env_var()")
        ]
    except Exception as exc:  # any other template failure is still the user's template
        line = _template_line(sys.exc_info()[2], filename)
        return None, [error("KPI065", f"Jinja error: {ctx.secrets.scrub(str(exc))}", at(line))]
