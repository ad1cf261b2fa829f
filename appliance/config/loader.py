"""Load the appliance config from YAML; every problem is reported with file, line and key.

An integrator runs ``appliance validate`` before leaving the shop floor, so each
problem reads like a compiler message::

    pipelines/line3.yaml:14: sources.1.uri: rtsp URI needs a host, e.g. rtsp://camera.local:554/stream

The YAML is composed once (PyYAML's node tree keeps the position of every mapping
key and sequence item), walked to build a key path → line map (and to catch the
duplicate keys PyYAML silently accepts), then constructed with the safe
constructor and validated by the pydantic schema. Every pydantic error is turned
into a :class:`ConfigProblem`; nothing escapes as a traceback.
"""

from __future__ import annotations

import os
import re
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from appliance.config.schema import LOC_SUFFIX, ApplianceConfig, duplicate_id_reason, find_duplicate_ids

TOP = "(top)"
FILE = "(file)"

#: A key path as found in the YAML: mapping keys and sequence indexes, all as strings.
KeyPath = tuple[str, ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_NULL_TAG = "tag:yaml.org,2002:null"
_OWN_MESSAGE = {"value_error", "assertion_error", "missing", "extra_forbidden"}


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config file, pinned to a line and a key path."""

    file: str
    line: int | None
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line or 1}: {self.path}: {self.reason}"


class ConfigError(Exception):
    """A config file that cannot be used; ``problems`` lists everything wrong with it."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems: list[ConfigProblem] = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


def load_config(path: str | Path) -> ApplianceConfig:
    """Read, check and return the config at ``path``; raise :class:`ConfigError` if bad.

    Relative paths inside the file resolve against the file's directory.
    """
    file = os.fspath(path)
    path = Path(path)

    def problem(line: int | None, key: str, reason: str) -> ConfigError:
        return ConfigError([ConfigProblem(file, line, key, reason)])

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise problem(None, FILE, "file not found") from None
    except IsADirectoryError:
        raise problem(None, FILE, "is a directory, not a config file") from None
    except PermissionError:
        raise problem(None, FILE, "cannot read file: permission denied") from None
    except OSError as exc:
        raise problem(None, FILE, f"cannot read file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise problem(line, FILE, f"not UTF-8 text (byte 0x{raw[exc.start]:02x})") from None
    if not text.strip():
        raise problem(1, FILE, "file is empty")

    data, lines, problems = _read_yaml(file, text)
    root_line = lines[()]
    try:
        config = ApplianceConfig.model_validate(data, context={"base_dir": path.parent})
    except ValidationError as exc:
        problems.extend(_validation_problems(file, exc, data, lines))
        # A list whose items failed never reaches its duplicate-id check: look at the raw ids.
        reported = {p.path for p in problems}
        problems.extend(p for p in _raw_duplicate_ids(file, data, lines) if p.path not in reported)
    except Exception as exc:  # noqa: BLE001 - a validator bug must still read as a problem
        problems.append(
            ConfigProblem(file, root_line, TOP, f"could not validate: {type(exc).__name__}: {exc}")
        )
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: (p.line or 0, p.path)))
    return config


def validate_files(paths: Iterable[str | Path]) -> list[ConfigProblem]:
    """Every problem in every file (an empty list when all are good)."""
    problems: list[ConfigProblem] = []
    for path in paths:
        try:
            load_config(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
    return problems


def _raw_duplicate_ids(file: str, data: Any, lines: dict[KeyPath, int]) -> list[ConfigProblem]:
    found: list[ConfigProblem] = []
    if not isinstance(data, dict):
        return found
    for field, what in (("sources", "source"), ("models", "model")):
        items = data.get(field)
        if not isinstance(items, list):
            continue
        ids = [item.get("id") if isinstance(item, dict) else None for item in items]
        for position, ident, first in find_duplicate_ids(ids):
            if ident is None:
                continue
            key = (field, str(position), "id")
            found.append(ConfigProblem(
                file, _line(lines, key), _dotted(key), duplicate_id_reason(what, ident, field, first)
            ))
    return found


# --- YAML ------------------------------------------------------------------------------


def _read_yaml(file: str, text: str) -> tuple[Any, dict[KeyPath, int], list[ConfigProblem]]:
    """The document's data, the line of each key path, and its duplicate keys.

    Raises :class:`ConfigError` when there is no usable mapping to validate.
    """
    try:
        loader = yaml.SafeLoader(text)  # refuses unprintable characters right away
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(file, text, exc)]) from None
    try:
        root = loader.get_single_node()
        if root is None:
            raise ConfigError([ConfigProblem(file, 1, FILE, "file is empty (only comments)")])
        root_line = root.start_mark.line + 1
        if not isinstance(root, yaml.MappingNode):
            allowed = ", ".join(ApplianceConfig.model_fields)
            reason = f"top level must be a mapping of keys ({allowed}), not {_kind(root)}"
            raise ConfigError([ConfigProblem(file, root_line, TOP, reason)])
        lines: dict[KeyPath, int] = {(): root_line}
        problems = _walk(file, root, (), lines, set())
        try:
            data = loader.construct_document(root)
        except yaml.YAMLError as exc:
            raise ConfigError([*problems, _yaml_problem(file, text, exc)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(file, text, exc)]) from None
    finally:
        loader.dispose()
    return data, lines, problems


def _walk(
    file: str, node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], active: set[int]
) -> list[ConfigProblem]:
    """Record the line of every key and item below ``node``; report duplicate keys."""
    if id(node) in active:  # a recursive alias
        return []
    active.add(id(node))
    problems: list[ConfigProblem] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue  # complex keys and `<<` merges have no line of their own in the data
            line = key_node.start_mark.line + 1
            child = (*path, key_node.value)
            identity = (key_node.tag, key_node.value)
            if identity in first:
                problems.append(
                    ConfigProblem(
                        file,
                        line,
                        _dotted(child),
                        f"duplicate key (first defined on line {first[identity]}; "
                        "only this later value would be used)",
                    )
                )
            else:
                first[identity] = line
            lines[child] = line  # the later value is the one the data holds
            problems.extend(_walk(file, value_node, child, lines, active))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, str(index))
            lines[child] = item.start_mark.line + 1
            problems.extend(_walk(file, item, child, lines, active))
    active.discard(id(node))
    return problems


def _yaml_problem(file: str, text: str, exc: yaml.YAMLError) -> ConfigProblem:
    if isinstance(exc, yaml.reader.ReaderError):
        line = text[: exc.position].count("\n") + 1
        character = exc.character if isinstance(exc.character, int) else ord(exc.character)
        reason = f"YAML syntax error: unacceptable character #x{character:04x}"
        return ConfigProblem(file, line, FILE, reason)
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = "unsupported YAML" if isinstance(exc, yaml.constructor.ConstructorError) else (
            "YAML syntax error"
        )
        problem, context = exc.problem, exc.context
        if not (problem and context):
            return ConfigProblem(file, line, FILE, f"{what}: {problem or context or exc}")
        if not context.startswith("while "):  # e.g. "expected a single document in the stream"
            return ConfigProblem(file, line, FILE, f"{what}: {context}, {problem}")
        if exc.context_mark is not None and exc.context_mark.line + 1 != line:
            context += f" started on line {exc.context_mark.line + 1}"
        return ConfigProblem(file, line, FILE, f"{what}: {problem} ({context})")
    return ConfigProblem(file, 1, FILE, f"YAML error: {exc}")


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == _NULL_TAG:
        return "null"
    return f"a single value ({_show(node.value)})"


# --- pydantic errors ---------------------------------------------------------------------


def _validation_problems(
    file: str, exc: ValidationError, data: Any, lines: dict[KeyPath, int]
) -> list[ConfigProblem]:
    # Alternatives of a union fail together at one key: they become one problem.
    grouped: dict[tuple[str | int, ...], list[tuple[str, Any, bool]]] = {}
    union: set[tuple[str | int, ...]] = set()
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"]) + tuple((error.get("ctx") or {}).get(LOC_SUFFIX, ()))
        path, stripped = _data_path(loc, data, error["type"])
        if stripped:
            union.add(path)
        grouped.setdefault(path, []).append(
            (_message(error, path), error.get("input"), _shows_input(error))
        )

    problems: list[ConfigProblem] = []
    for path, reasons in grouped.items():
        messages = list(dict.fromkeys(message for message, _, _ in reasons))
        reason = (" or " if path in union else "; ").join(messages)
        _, value, _ = reasons[0]
        if all(shows for _, _, shows in reasons):
            reason += f" (got {_show(value)})"
        key = tuple(str(part) for part in path)
        problems.append(ConfigProblem(file, _line(lines, key), _dotted(key) or TOP, reason))
    return problems


def _data_path(
    loc: tuple[str | int, ...], data: Any, error_type: str
) -> tuple[tuple[str | int, ...], bool]:
    """Drop the parts of ``loc`` that are not keys of the file (union member tags)."""
    path: list[str | int] = []
    stripped = False
    node = data
    for position, part in enumerate(loc):
        last = position == len(loc) - 1
        present = (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        )
        if present:
            node = node[part]
        elif isinstance(part, int) or (last and error_type in ("missing", "invalid_key")):
            node = None  # a missing key or item: still a real place in the file
        else:
            stripped = True  # e.g. 'list[str]', 'function-after[...]'
            continue
        path.append(part)
    return tuple(path), stripped


def _message(error: Any, path: tuple[str | int, ...]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        model = _model_at(path[:-1])
        if model is None:
            return "unknown key"
        return f"unknown key (allowed: {', '.join(model.model_fields)})"
    if kind == "missing":
        return "required item missing" if path and isinstance(path[-1], int) else (
            "required key missing"
        )
    if kind == "model_type":
        model = _model_at(path)
        allowed = f" (keys: {', '.join(model.model_fields)})" if model is not None else ""
        return f"should be a mapping{allowed}"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return re.sub(r" for <class '[^']*'>", "", message)


def _shows_input(error: Any) -> bool:
    """Whether quoting the offending value helps (our own messages already name it)."""
    if error["type"] in _OWN_MESSAGE or LOC_SUFFIX in (error.get("ctx") or {}):
        return False
    return isinstance(error.get("input"), (str, int, float, bool, type(None)))


def _line(lines: dict[KeyPath, int], key: KeyPath) -> int:
    """The line of ``key``, else of its nearest parent that is in the file, else 1."""
    while key:
        if key in lines:
            return lines[key]
        key = key[:-1]
    return lines.get((), 1)


def _dotted(key: Sequence[str]) -> str:
    return ".".join(key)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- finding the model behind a key path -------------------------------------------------


def _model_at(path: Sequence[str | int]) -> type[BaseModel] | None:
    """The schema model that validates the mapping at ``path`` (None if not a model)."""
    annotation: Any = ApplianceConfig
    for part in path:
        annotation = _step(annotation, part)
        if annotation is None:
            return None
    return next((option for option in _options(annotation) if _is_model(option)), None)


def _step(annotation: Any, part: str | int) -> Any:
    for option in _options(annotation):
        if isinstance(part, str) and _is_model(option):
            field = option.model_fields.get(part)
            if field is not None:
                return field.annotation
        if isinstance(part, int) and get_origin(option) in (list, tuple, Sequence):
            args = [arg for arg in get_args(option) if arg is not Ellipsis]
            if args:
                return args[min(part, len(args) - 1)]
    return None


def _options(annotation: Any) -> list[Any]:
    """The alternatives of ``annotation``, with ``Annotated`` and unions unwrapped."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _options(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [option for arg in get_args(annotation) for option in _options(arg)]
    return [annotation]


def _is_model(annotation: Any) -> bool:
    try:
        return isinstance(annotation, type) and issubclass(annotation, BaseModel)
    except TypeError:  # parametrized generics on older Pythons
        return False
