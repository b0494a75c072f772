"""Policies as YAML text: keys in the order given, shared values written out, comments on top."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

_BaseDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: 1,000 rules a second


class _Dumper(_BaseDumper):  # type: ignore[valid-type,misc]  # a base chosen at import: libyaml's when present
    def ignore_aliases(self, data: Any) -> bool:  # a shared dict is written out each time, never as &id001
        return True


def dump_yaml(data: Mapping[str, Any], header: str = "") -> str:
    """A policy's data as YAML text, keys in the order given, with `header` as leading comment lines."""
    comment = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    return comment + yaml.dump(dict(data), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)


def plain_number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)
