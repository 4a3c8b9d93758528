"""Config dataclasses -> CLI flags, the TRL way: every field has a type, a default and
``field(metadata={"help": ...})``; the help text is the CLI documentation.

    @dataclass
    class GraphConfig:
        seed: int = field(default=0, metadata={"help": "Random seed."})

    add_dataclass_arguments(parser, GraphConfig)
    cfg = dataclass_from_args(GraphConfig, parser.parse_args())

A field whose type is itself a config dataclass (``reward: RewardConfig = field(default_factory=...)``)
nests, as TRL and verl nest theirs: its fields become ``--<group>-<field>`` flags (``--reward-weights``)
and, in a JSON/YAML config, a nested object (``{"reward": {"weights": "paper"}}``). Each knob is
declared once, in its own dataclass, with one default.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import sys
import types
import typing
import warnings
from collections.abc import Mapping
from typing import Any, TypeVar

from rerec.errors import ConfigError

T = TypeVar("T")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-").replace(".", "-")


def nested_config_class(tp: Any) -> type | None:
    """The dataclass a field nests (``RewardConfig`` for ``reward: RewardConfig``), else None."""
    tp = _base_type(tp)
    return tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


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


def old_names(cls: type) -> dict[str, str]:
    """``{"mode": "context_mode", ...}``: the earlier names of ``cls``'s fields (``field(metadata={"old_names":
    ("mode",)})``). A knob renamed so that every stage calls it the same keeps its old name here: a config or
    override that uses it is read with a :class:`FutureWarning`, an old flag with a note on stderr (the flag is
    hidden from ``--help``), a saved file (a model's training config, a report) silently."""
    return {old: f.name for f in dataclasses.fields(cls) for old in f.metadata.get("old_names", ())}


def with_current_names(cls: type, values: Mapping[str, Any], where: str = "config", *,
                       warn: bool = True) -> dict[str, Any]:
    """``values`` with the old names of ``cls``'s fields (:func:`old_names`) replaced by the current ones. A key
    given under both names is a :class:`ConfigError` when ``warn`` (a config a person wrote), else the current
    name wins (a saved file that carries both). ``warn``: a :class:`FutureWarning` per old name used."""
    renamed = old_names(cls)
    out = dict(values)
    for old, new in renamed.items():
        if old not in out:
            continue
        value = out.pop(old)
        if warn:
            if new in out:
                raise ConfigError(f"{where}: '{old}' and '{new}' are one option ('{old}' is its old name). "
                                  f"Fix: keep only '{new}'.")
            warnings.warn(f"{where}: '{old}' is deprecated and will be removed; use '{new}' (same values).",
                          FutureWarning, stacklevel=3)
        out.setdefault(new, value)
    return out


class _OldFlag(argparse.Action):
    """A renamed option's old flag: hidden from ``--help``, stores into the new option with a note on stderr."""

    def __init__(self, option_strings: list[str], dest: str, new_flag: str = "", **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new_flag = new_flag

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"{parser.prog}: {option_string} is deprecated and will be removed; use {self.new_flag} (same values).",
              file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, group: str | None = None,
                            prefix: str = "") -> None:
    """Add one ``--flag`` per field of the dataclass ``cls``; a nested config dataclass field ``reward``
    adds its own fields as ``--reward-<field>`` in an argument group of their own (dest ``reward.<field>``)."""
    target = parser.add_argument_group(group or cls.__name__) if group is not False else parser
    hints = typing.get_type_hints(cls)
    nested = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name.startswith("_"):
            continue
        sub = nested_config_class(hints[f.name])
        if sub is not None:
            nested.append((f, sub))
            continue
        tp = _base_type(hints[f.name])
        default = _field_default(f)
        help_text = f.metadata.get("help", "")
        # argparse %-formats help strings: a literal "%" (e.g. "10% of the steps") must be doubled.
        help_full = f"{help_text} (default: {default})".replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": prefix + f.name, "default": default, "help": help_full}
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
        if prefix and not choices and tp is not bool:
            kwargs["metavar"] = f.name.upper()
        target.add_argument(_flag(prefix + f.name), **kwargs)
        for old in f.metadata.get("old_names", ()):
            hidden = {k: v for k, v in kwargs.items() if k in ("dest", "type", "nargs", "choices", "metavar")}
            target.add_argument(_flag(prefix + old), action=_OldFlag, new_flag=_flag(prefix + f.name),
                                help=argparse.SUPPRESS, default=argparse.SUPPRESS, **hidden)
    for f, sub in nested:
        title = f"{prefix}{f.name} ({sub.__name__}, flags --{_flag(prefix + f.name)[2:]}-*)"
        add_dataclass_arguments(parser, sub, group=title, prefix=f"{prefix}{f.name}.")


def dataclass_from_args(cls: type[T], args: argparse.Namespace, prefix: str = "") -> T:
    """Build ``cls`` from the namespace :func:`add_dataclass_arguments` filled (nested fields included)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        sub = nested_config_class(hints[f.name])
        if sub is not None:
            if any(name.startswith(f"{prefix}{f.name}.") for name in vars(args)):
                values[f.name] = dataclass_from_args(sub, args, prefix=f"{prefix}{f.name}.")
        elif hasattr(args, prefix + f.name):
            values[f.name] = getattr(args, prefix + f.name)
    return cls(**values)


def check_minimums(cfg: Any, minimums: dict[str, float], *, strict: tuple[str, ...] = (), prefix: str = "") -> None:
    """Refuse numeric options below their minimum (``None`` = the profile decides, skipped), one message
    for all of them: ``steps=-1`` would otherwise reach the HF Trainer, whose ``max_steps <= 0`` silently
    means 'train for num_train_epochs' instead. Names in ``strict`` must be above the minimum, not equal.
    ``prefix`` names a nested config's flags (``"curriculum."`` -> ``--curriculum-probe-every``)."""
    problems = []
    for name, low in minimums.items():
        value = getattr(cfg, name)
        if value is None:
            continue
        if value < low or (name in strict and value == low):
            bound = f"> {low:g}" if name in strict else f">= {low:g}"
            problems.append((name, value, bound))
    if problems:
        what = "; ".join(f"{prefix}{name} must be {bound}, got {value}" for name, value, bound in problems)
        flags = ", ".join(f"{_flag(prefix + name)} ({bound})" for name, _, bound in problems)
        raise ConfigError(f"{type(cfg).__name__}: {what}. Fix: pass {flags}, or leave the option out for its "
                          "default (the profile's value where the profile sets one).")


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is None and hasattr(tp, "__name__"):
        return tp.__name__
    return str(tp).replace("typing.", "")


def check_value(tp: Any, value: Any) -> tuple[bool, Any]:
    """Whether ``value`` (from JSON/YAML) fits the annotation ``tp``; returns (ok, value to use).

    The conversions are the lossless ones JSON needs: an int where a float is expected, a list where
    a tuple is. Strings are never parsed into numbers here, and ``True`` is not an int."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object:
        return True, value
    if origin in (typing.Union, types.UnionType):
        for option in args:
            ok, converted = check_value(option, value)
            if ok:
                return True, converted
        return False, value
    if tp is type(None):
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False, value
        return True, float(value)
    if tp is str:
        return isinstance(value, str), value
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple, set, frozenset):
        if not isinstance(value, list | tuple | set | frozenset):
            return False, value
        inner = args[0] if args else Any
        out = []
        for item in value:
            ok, converted = check_value(inner, item)
            if not ok:
                return False, value
            out.append(converted)
        container = origin or tp
        return True, container(out) if container is not list else out
    if origin is dict or tp is dict:
        return isinstance(value, dict), value
    if isinstance(tp, type):
        return isinstance(value, tp), value
    return True, value  # an annotation we do not check (Literal, a Protocol...): the class decides


def _nested_names(cls: type) -> dict[str, str]:
    """``{"tau": "curriculum.tau", ...}``: the fields of ``cls``'s nested configs, by their own name."""
    hints = typing.get_type_hints(cls)
    out: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        sub = nested_config_class(hints[f.name]) if f.init else None
        if sub is not None:
            for g in dataclasses.fields(sub):
                if g.init:
                    out.setdefault(g.name, f"{f.name}.{g.name}")
    return out


def _unknown_keys_error(cls: type, unknown: list, names: set[str], where: str) -> ConfigError:
    nested = _nested_names(cls)
    guesses = []
    for key in unknown:
        text = str(key).replace("-", "_")
        close = difflib.get_close_matches(text, names, n=1)
        close_nested = difflib.get_close_matches(text, nested, n=1)
        if text in nested or (close_nested and not close):
            group, field_name = nested[text if text in nested else close_nested[0]].split(".", 1)
            guesses.append(f'{{"{group}": {{"{field_name}": ...}}}} for \'{key}\'')
        elif close:
            guesses.append(f"'{close[0]}' for '{key}'")
    return ConfigError(
        f"{where}: unknown option(s) {', '.join(map(str, unknown))} for {cls.__name__}. "
        + (f"Did you mean {', '.join(guesses)}? " if guesses else "")
        + f"Fix: use one of {', '.join(sorted(names))}."
    )


def dataclass_from_dict(cls: type[T], values: dict[str, Any], where: str = "config") -> T:
    """Build ``cls`` from a dict (a YAML/JSON config, pipeline parameters), refusing unknown keys,
    values of the wrong type and values outside a field's ``choices``, with a message per problem.
    A nested config field takes an object of its own fields (checked the same way; the ones left out
    keep their defaults) or an instance of its dataclass."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of option names to values, got {type(values).__name__}. "
                          'Fix: pass an object such as {"seed": 0}.')
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    names = set(fields)
    values = with_current_names(cls, values, where)
    unknown = sorted(set(values) - names, key=str)
    if unknown:
        raise _unknown_keys_error(cls, unknown, names, where)
    hints = typing.get_type_hints(cls)
    clean: dict[str, Any] = {}
    problems = []
    for key, value in values.items():
        sub = nested_config_class(hints[key])
        if sub is not None:
            if isinstance(value, sub):
                clean[key] = value
            elif isinstance(value, dict):
                clean[key] = dataclass_from_dict(sub, value, where=f"{where}: {key}")
            else:
                problems.append(f"'{key}' must be an object of {sub.__name__} options (e.g. {{\"{key}\": "
                                f"{{...}}}}), got {value!r} ({type(value).__name__})")
            continue
        ok, converted = check_value(hints.get(key, Any), value)
        if not ok:
            problems.append(f"'{key}' must be {_type_name(hints[key])}, got {value!r} ({type(value).__name__})")
            continue
        choices = fields[key].metadata.get("choices")
        if choices and converted not in choices and not (converted is None and fields[key].default is None):
            problems.append(f"'{key}' must be one of {', '.join(map(str, choices))}, got {converted!r}")
            continue
        clean[key] = converted
    if problems:
        raise ConfigError(f"{where}: {'; '.join(problems)}. Fix: correct the value(s) in {cls.__name__}'s config.")
    try:
        return cls(**clean)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:  # a __post_init__ check that raised a plain error
        raise ConfigError(f"{where}: invalid {cls.__name__} ({exc}). "
                          "Fix: correct the option values (see 'rerec <stage> --help').") from exc


def merge_config_dicts(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``, nested objects merged key by key (so ``{"curriculum": {"tau": 0.1}}``
    changes tau and keeps the base's other curriculum options); the result shares no object with either
    input, so changing it changes neither."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_config_dicts(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def json_object(text: str | None, subject: str, shape: str, fix: str) -> dict[str, Any]:
    """``text`` parsed as a JSON object (empty: ``{}``); anything else is a :class:`ConfigError` naming
    ``subject``, the ``shape`` expected and the ``fix``."""
    import json

    try:
        values = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{subject} is not valid JSON ({exc}). Fix: {fix}") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"{subject} must be {shape}, got {type(values).__name__}. Fix: {fix}")
    return values


def config_with(cfg: T, overrides: dict[str, Any], where: str = "config") -> T:
    """A copy of the config dataclass ``cfg`` with ``overrides`` (nested dicts for nested configs) applied
    and checked as :func:`dataclass_from_dict` checks a config."""
    overrides = with_current_names(type(cfg), overrides, where)
    return dataclass_from_dict(type(cfg), merge_config_dicts(dataclasses.asdict(cfg), overrides), where=where)
