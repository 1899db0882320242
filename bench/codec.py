"""Dataclasses to plain JSON data and back, every field checked against its type.

The one codec of everything that crosses the node boundary (bench.messages) and of the
scenario: a field list is written once, in its dataclass, and read from there by the
encoder, the decoder and the scenario loader's unknown-field check.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from bench.errors import InputError

T = TypeVar("T")


class MessageError(InputError):
    """A job or event line that does not fit its dataclass."""


def to_data(obj: Any) -> Any:
    """A dataclass (nested, with tuples, lists and dicts) as plain JSON data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_data(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_data(v) for k, v in obj.items()}
    return obj


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = [o for o in get_args(tp) if o is not type(None)]
        if value is None and len(options) < len(get_args(tp)):
            return None
        if len(options) == 1:
            return _convert(options[0], value, where)
        for option in options:
            try:
                return _convert(option, value, where)
            except MessageError:
                continue
        raise MessageError(f"{where}: expected {tp}, got {value!r}"[:300])
    if tp is type(None):
        if value is None:
            return None
        raise MessageError(f"{where}: expected null, got {value!r}"[:300])
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_data(tp, value, where)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise MessageError(f"{where}: expected a list, got {value!r}"[:300])
        item = get_args(tp)[0] if get_args(tp) else Any
        converted = [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple else converted
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise MessageError(f"{where}: expected a mapping, got {value!r}"[:300])
        vt = get_args(tp)[1] if get_args(tp) else Any
        return {str(k): _convert(vt, v, f"{where}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and type(value) is tp:
        return value
    raise MessageError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}"[:300])


def from_data(cls: type[T], data: Any, where: str = "") -> T:
    """`cls` built from JSON data: every field checked against its type, unknown fields refused."""
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise MessageError(f"{where}: expected a mapping, got {type(data).__name__}")
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    names = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = set(data) - set(names)
    if unknown:
        raise MessageError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    hints = _hints(cls)
    kwargs = {}
    for name, f in names.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise MessageError(f"{where}: field {name} is missing")
    return cls(**kwargs)


def field_names(cls: type) -> tuple[str, ...]:
    """The fields of a dataclass, in order."""
    return tuple(f.name for f in dataclasses.fields(cls))
