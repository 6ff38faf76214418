"""INVOKE_BMC_* environment variables that name no configuration key.

Invoke reads an environment variable only for a key already in its config tree
(``INVOKE_BMC_AWS_REGION`` → ``bmc.aws.region``) and silently ignores any other, so a typo would
deploy with the default. The same names are computed here from the same tree, and any other
variable with the prefix is refused with the nearest known one.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any

from contracts.errors import ConfigError

# Invoke's own prefix (INVOKE_) followed by the toolkit's config root (bmc).
PREFIX = "INVOKE_BMC_"


def environment_keys(tree: Mapping[str, Any]) -> dict[str, str]:
    """Environment variable → dotted key, for every leaf of the ``bmc`` config tree."""
    return {PREFIX + "_".join(path).upper(): ".".join(path) for path in _leaves(tree, ())}


def check_environment(environ: Mapping[str, str], tree: Mapping[str, Any]) -> None:
    known = environment_keys(tree)
    unknown = sorted(name for name in environ if name.startswith(PREFIX) and name not in known)
    if not unknown:
        return
    name = unknown[0]
    # Compared without the shared prefix, which would make every name look alike.
    suffixes = {known_name.removeprefix(PREFIX): known_name for known_name in known}
    close = difflib.get_close_matches(name.removeprefix(PREFIX), sorted(suffixes), n=1, cutoff=0.6)
    nearest = [suffixes[c] for c in close]
    hint = f"did you mean {nearest[0]}, key {known[nearest[0]]}?" if nearest else "`invoke config` lists them"
    more = f"; {len(unknown) - 1} more: {', '.join(unknown[1:4])}" if len(unknown) > 1 else ""
    raise ConfigError(
        f"environment variable {name} names no configuration key ({hint}{more}); mappings such as "
        "aws.pools or aws.habana_ami_ids are set in invoke.yaml"
    )


def _leaves(tree: Mapping[str, Any], path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from _leaves(value, (*path, str(key)))
        else:
            yield (*path, str(key))
