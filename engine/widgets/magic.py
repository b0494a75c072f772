"""The %%policy cell magic: `%%policy name [--base PATH]` loads the cell's YAML as a Policy into `name`."""

from __future__ import annotations

import shlex
from typing import Any

from ..errors import UsageError
from ..policy import Policy, loads


def policy_cell(line: str, cell: str, namespace: dict[str, Any]) -> Policy:
    """Load the cell as a policy (a variant of --base if given) into namespace[name]; errors as engine.loads
    raises them, located at <cell name>:line:col."""
    words = shlex.split(line)
    base = None
    if "--base" in words:
        at = words.index("--base")
        if at + 1 >= len(words):
            raise UsageError("%%policy: --base needs the path of the base policy")
        base = words[at + 1]
        del words[at:at + 2]
    if len(words) != 1 or not words[0].isidentifier():
        raise UsageError("usage: %%policy NAME [--base PATH] (NAME: the variable to load the policy into)")
    policy = loads(cell, source=f"<cell {words[0]}>", base=base)
    namespace[words[0]] = policy
    return policy


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext engine.widgets.magic` registers %%policy."""
    def policy(line: str, cell: str) -> None:
        policy_cell(line, cell, ipython.user_ns)

    ipython.register_magic_function(policy, magic_kind="cell", magic_name="policy")
