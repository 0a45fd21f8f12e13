"""YAML loading that stamps every mapping and list with its file and line.

PyYAML's libyaml parser is used for speed (a 10,000-KPI project must load in
seconds); a small constructor subclass keeps the marks that libyaml already
computes and refuses duplicate keys, which plain YAML silently overwrites.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from .errors import Issue, Location, error

try:  # libyaml is bundled with PyYAML's wheels; fall back to pure Python if absent
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]


class LocDict(dict):
    """A mapping that knows where it was written, and where each of its keys was."""

    __slots__ = ("loc", "key_locs", "value_locs", "value_styles")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loc: Location | None = None
        self.key_locs: dict[Any, Location] = {}
        self.value_locs: dict[Any, Location] = {}
        self.value_styles: dict[Any, str | None] = {}

    def key_loc(self, key: Any) -> Location | None:
        return self.key_locs.get(key, self.loc)

    def value_loc(self, key: Any) -> Location | None:
        return self.value_locs.get(key, self.key_loc(key))


class LocList(list):
    __slots__ = ("loc", "item_locs")

    def __init__(self, *args):
        super().__init__(*args)
        self.loc: Location | None = None
        self.item_locs: list[Location] = []


def _loc(path: str, mark) -> Location:
    return Location(path, mark.line + 1, mark.column + 1)


class DuplicateKey(Exception):
    def __init__(self, key: Any, first: Location, second: Location):
        super().__init__(key)
        self.key, self.first, self.second = key, first, second


def _construct(loader, node):
    """Construct a node; an impossible value (2026-13-01) becomes a YAML error at its line."""
    try:
        return loader.construct_object(node, deep=True)
    except (ValueError, OverflowError) as exc:
        raise yaml.constructor.ConstructorError(
            None, None, f"invalid value {node.value!r}: {exc}", node.start_mark
        ) from None


_STR, _MAP, _SEQ = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"


def _mapping(node, path: str, child) -> LocDict:
    out = LocDict()
    out.loc = _loc(path, node.start_mark)
    for key_node, value_node in node.value:
        key = child(key_node)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(None, None, "found an unhashable key", key_node.start_mark) from None
        if key in out:
            raise DuplicateKey(key, out.key_locs[key], _loc(path, key_node.start_mark))
        out[key] = child(value_node)
        out.key_locs[key] = _loc(path, key_node.start_mark)
        out.value_locs[key] = _loc(path, value_node.start_mark)
        out.value_styles[key] = getattr(value_node, "style", None)
    return out


def _sequence(node, path: str, child) -> LocList:
    out = LocList(child(c) for c in node.value)
    out.loc = _loc(path, node.start_mark)
    out.item_locs = [_loc(path, c.start_mark) for c in node.value]
    return out


class _Builder:
    """Python values from a composed document: plain mappings, lists and strings directly, anything else
    (numbers, dates, tagged nodes) through PyYAML's safe constructors. PyYAML's own generic construction
    cost a 10,000-KPI project 0.4 s of its 0.85 s of YAML."""

    def __init__(self, loader, path: str):
        self.loader, self.path = loader, path
        self.built: dict[int, Any] = {}  # an alias is the same node object: it gets the same value
        self.building: set[int] = set()

    def value(self, node):
        tag = node.tag
        if tag == _STR and type(node) is yaml.ScalarNode:
            return node.value
        if tag not in (_MAP, _SEQ):
            return _construct(self.loader, node)
        key = id(node)
        if key in self.built:
            return self.built[key]
        if key in self.building:
            raise yaml.constructor.ConstructorError(None, None, "found unconstructable recursive node", node.start_mark)
        self.building.add(key)
        if tag == _MAP:
            self.loader.flatten_mapping(node)  # merge keys ('<<: *base')
            out = _mapping(node, self.path, self.value)
        else:
            out = _sequence(node, self.path, self.value)
        self.building.discard(key)
        self.built[key] = out
        return out


def _make_loader(path: str):
    class Loader(_BaseLoader):  # type: ignore[misc, valid-type]
        pass

    def construct_mapping(loader, node, deep=False):  # a mapping inside a tagged node (!!set, !!omap)
        loader.flatten_mapping(node)
        return _mapping(node, path, lambda n: _construct(loader, n))

    def construct_sequence(loader, node, deep=False):
        return _sequence(node, path, lambda n: _construct(loader, n))

    Loader.add_constructor(_MAP, construct_mapping)
    Loader.add_constructor(_SEQ, construct_sequence)
    return Loader


# Limits (SPEC §11): a project file is text a person writes; past these it is an error at its line,
# never a hang, a flood of output or a crash. The 10,000-KPI benchmark project is under 3 MB.
MAX_FILE_BYTES = 16 << 20
MAX_LINE_CHARS = 10_000
# values that aliases may add to a document beyond those written in it ("billion laughs": nine
# lines of nine aliases each expand to 9**9 values; a `<<: *defaults` per KPI adds a few each)
MAX_ALIAS_VALUES = 1_000_000
ECHO_CHARS = 80  # the most of one input value a message quotes


def shown(value: Any, width: int = ECHO_CHARS) -> str:
    """`value` as a message quotes it (repr), cut to `width` characters with the length said."""
    text = repr(value)
    if len(text) <= width:
        return text
    length = len(value) if isinstance(value, (str, bytes, list, dict)) else len(text)
    return f"{text[:width]}… ({length:,} characters)"


class AliasLimit(Exception):
    def __init__(self, mark, added: int):
        super().__init__(added)
        self.mark, self.added = mark, added


def _check_aliases(root) -> None:
    """Refuse a document whose aliases expand to more than MAX_ALIAS_VALUES values beyond those written.

    Composed YAML is a graph: an alias is the anchored node itself. Each node's expanded size is summed
    once (memoised, so the check is linear in the written document). A node is written in the first
    container that reaches it (an anchor comes before its aliases) and added by an alias wherever else
    it is reached. The error is at the first container, inside out, whose aliases add too much."""
    size: dict[int, int] = {}
    added: dict[int, int] = {}
    owner: dict[int, tuple[int, int]] = {}  # node -> (the container that wrote it, at which position)
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if isinstance(node, yaml.MappingNode):
            children = [c for pair in node.value for c in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            size[key], added[key] = 1, 0
            continue
        if not done:
            if key in size:
                continue
            size[key] = 1  # while expanding: a recursive alias counts once (the builder refuses it)
            stack.append((node, True))
            for i, child in enumerate(children):
                if id(child) not in size and id(child) not in owner:
                    owner[id(child)] = (key, i)
            stack.extend((c, False) for c in reversed(children))
            continue
        total, extra = 1, 0
        for i, child in enumerate(children):
            ck = id(child)
            total += size.get(ck, 1)
            extra += added.get(ck, 0) if owner.get(ck) == (key, i) else size.get(ck, 1)
        size[key], added[key] = total, extra
        if extra > MAX_ALIAS_VALUES:
            raise AliasLimit(node.start_mark, extra)


def _documents(text: str, path: str) -> list[Any]:
    loader = _make_loader(path)(text)
    try:
        docs = []
        while loader.check_node():
            node = loader.get_node()
            if "&" in text:  # no anchor, no alias: nothing to expand
                _check_aliases(node)
            docs.append(_Builder(loader, path).value(node))
        return docs
    finally:
        loader.dispose()


CONTEXT_WIDTH = 120


def _context(text: str, line: int, col: int, radius: int = 2) -> str:
    """The numbered lines around a position, with a caret under the column (as dbt shows)."""
    lines = text.splitlines()
    lo, hi = max(1, line - radius), min(len(lines), line + radius)
    width = len(str(hi))
    # a window of the lines around the column, so a 10,000-character line is not printed whole
    start = max(0, col - 1 - CONTEXT_WIDTH // 2)
    out = []
    for n in range(lo, hi + 1):
        shown = lines[n - 1][start:start + CONTEXT_WIDTH]
        out.append(f"{n:>{width}} | {'…' if start else ''}{shown}")
        if n == line:
            out.append(" " * width + " | " + " " * (col - 1 - start + (1 if start else 0)) + "^")
    return "\n".join(out)


def _line_col(data: str | bytes, offset: int) -> tuple[int, int]:
    """1-based line and column of an offset into text or bytes."""
    nl = "\n" if isinstance(data, str) else b"\n"
    return data.count(nl, 0, offset) + 1, offset - (data.rfind(nl, 0, offset) + 1) + 1


def _long_line(text: str) -> tuple[int, int] | None:
    """(line, length) of the first line longer than MAX_LINE_CHARS, if any."""
    if len(text) <= MAX_LINE_CHARS:
        return None
    lengths = list(map(len, text.split("\n")))
    if max(lengths) <= MAX_LINE_CHARS:
        return None
    line = next(n for n, length in enumerate(lengths, 1) if length > MAX_LINE_CHARS)
    return line, lengths[line - 1]


def parse_yaml(text: str, path: str) -> tuple[Any, list[Issue]]:
    """Parse one document; return (data, issues). Never raises for bad input."""
    loc0 = Location(path, 1, 1)
    nul = text.find("\x00")
    if nul >= 0:
        return None, [error("KPI002", "file is binary, not YAML text (a NUL byte)", Location(path, *_line_col(text, nul)))]
    long_line = _long_line(text)
    if long_line:
        line, length = long_line
        return None, [error("KPI101", f"line is {length:,} characters long, over the limit of {MAX_LINE_CHARS:,}",
                            Location(path, line, MAX_LINE_CHARS + 1),
                            "break the value over several lines (a YAML block scalar `|` or `>`), or shorten it")]
    try:
        docs = _documents(text, path)
    except DuplicateKey as dup:
        return None, [
            error(
                "KPI003",
                f"duplicate key {shown(dup.key)} (first defined at line {dup.first.line})",
                dup.second,
                "remove or rename one of them: YAML would silently keep only the last",
            )
        ]
    except AliasLimit as exc:
        return None, [error("KPI102", f"YAML aliases expand to more than {MAX_ALIAS_VALUES:,} values",
                            _loc(path, exc.mark),
                            "write the values out, or reuse them less: aliases of aliases multiply")]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        col = mark.column + 1 if mark else 1
        problem = clip(exc.problem or str(exc))
        if exc.context:
            problem = f"{clip(exc.context)}, {problem}"
        return None, [
            error("KPI001", f"YAML syntax error: {problem}", Location(path, line, col), "\n" + _context(text, line, col))
        ]
    except yaml.YAMLError as exc:
        return None, [error("KPI001", f"YAML syntax error: {clip(str(exc))}", loc0)]
    except RecursionError:
        return None, [error("KPI001", "YAML nesting is too deep to load", loc0)]
    if len(docs) > 1:
        return None, [error("KPI001", "a project file holds one YAML document, found several ('---')", loc0)]
    return (docs[0] if docs else None), []


def clip(text: str, width: int = 2 * CONTEXT_WIDTH) -> str:
    """Text that may quote the input (a library's message quoting an alias name, a tag, a value; a name),
    cut to `width` characters with its length said."""
    text = str(text)
    return text if len(text) <= width else f"{text[:width]}… ({len(text):,} characters)"


def read_text(path: Path, display: str, what: str = "file") -> tuple[str | None, list[Issue]]:
    """A project file's text, or the issue that says why it cannot be read: not a regular file, not
    readable, over MAX_FILE_BYTES, not UTF-8 (at the line of the first bad byte). A FIFO is refused
    before it is opened (opening one would wait for a writer)."""
    where = Location(display)
    try:
        st = os.stat(path)
    except OSError as exc:
        return None, [unreadable(path, display, exc)]
    if not stat.S_ISREG(st.st_mode):
        return None, [error("KPI103", f"not a regular {what} ({_kind(st.st_mode)})", where,
                            "a project holds plain files: replace it with one, or move it out of the project")]
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return None, [unreadable(path, display, exc)]
    if len(raw) > MAX_FILE_BYTES:
        line, _ = _line_col(raw, MAX_FILE_BYTES)
        return None, [error("KPI104", f"{what} is over the limit of {MAX_FILE_BYTES >> 20} MB",
                            Location(display, line, 1), "split it into several files")]
    bom = raw.startswith(b"\xef\xbb\xbf")
    body = raw[3:] if bom else raw
    nul = body.find(b"\x00")
    if nul >= 0:  # binary: said before its bytes are taken for text in an encoding
        return None, [error("KPI002", f"{what} is binary, not {'YAML' if what == 'file' else 'SQL'} text (a NUL byte)",
                            Location(display, *_line_col(body, nul)))]
    try:
        return body.decode("utf-8"), []
    except UnicodeDecodeError as exc:
        line, col = _line_col(body, exc.start)
        return None, [error("KPI002", f"{what} is not UTF-8 text (byte 0x{body[exc.start]:02x} at offset {exc.start + 3 * bom})",
                            Location(display, line, col), "save the file as UTF-8")]


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "a special file"


def unreadable(path: Path | str, display: str, exc: OSError) -> Issue:
    """The issue for a file or folder that cannot be read: a broken link, a link loop, no permission."""
    import errno

    where = Location(display)
    if exc.errno == errno.ELOOP:
        return error("KPI100", "link loop: the link points back to itself", where, "make the link point to a file")
    if exc.errno == errno.ENOENT and os.path.islink(path):
        return error("KPI100", f"broken link: it points to {shown(os.readlink(path))}, which does not exist", where,
                     "restore the file the link points to, or remove the link")
    return error("KPI002", f"cannot read: {exc.strerror or exc}", where,
                 "let the user that runs kpimetrics read it, or move it out of the project")


def load_yaml(path: Path, display: str | None = None) -> tuple[Any, list[Issue]]:
    name = display or str(path)
    text, issues = read_text(path, name)
    if text is None:
        return None, issues
    return parse_yaml(text, name)
