"""Config dataclasses -> CLI flags, the TRL way: every field has a type, a default and
``field(metadata={"help": ...})``; the help text is the CLI documentation.

    @dataclass
    class GraphConfig:
        seed: int = field(default=0, metadata={"help": "Random seed."})

    add_dataclass_arguments(parser, GraphConfig)
    cfg = dataclass_from_args(GraphConfig, parser.parse_args())
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, TypeVar

from rerec.errors import ConfigError

T = TypeVar("T")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(tp: Any) -> Any:
    """``int | None`` -> int; ``list[str]`` stays as is."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, group: str | None = None) -> None:
    """Add one ``--flag`` per field of the dataclass ``cls``."""
    target = parser.add_argument_group(group or cls.__name__) if group is not False else parser
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init or f.name.startswith("_"):
            continue
        tp = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        )
        help_text = f.metadata.get("help", "")
        kwargs: dict[str, Any] = {"dest": f.name, "default": default, "help": f"{help_text} (default: {default})"}
        choices = f.metadata.get("choices")
        if choices:
            kwargs["choices"] = choices
        if tp is bool:
            kwargs.update(type=_parse_bool, metavar="{true,false}")
        elif typing.get_origin(tp) in (list, tuple):
            (inner,) = typing.get_args(tp)[:1]
            kwargs.update(type=inner, nargs="*")
        elif tp in (int, float, str):
            kwargs["type"] = tp
        target.add_argument(_flag(f.name), **kwargs)


def dataclass_from_args(cls: type[T], args: argparse.Namespace) -> T:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.init and hasattr(args, f.name)}
    return cls(**values)


def dataclass_from_dict(cls: type[T], values: dict[str, Any], where: str = "config") -> T:
    """Build ``cls`` from a dict (a YAML/JSON config, pipeline parameters), refusing unknown keys."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown option(s) {', '.join(unknown)} for {cls.__name__}. "
            f"Fix: use one of {', '.join(sorted(names))}."
        )
    return cls(**values)
