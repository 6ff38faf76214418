"""CDK entry point (`cdk.json`): the only place that reads the environment; the rest is wiring.

The toolkit config comes from the JSON file named by the ``bmc:config-file`` context value
(`invoke up` writes it from invoke.yaml + INVOKE_BMC_* variables); without it, the typed defaults.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from aws_cdk import App

from contracts.config import load_config
from contracts.errors import ToolkitError
from infra.cdk.toolkit import CONFIG_FILE_CONTEXT, add_compliance_checks, add_stacks


def main() -> None:
    app = App()
    config_file = app.node.try_get_context(CONFIG_FILE_CONTEXT)
    try:
        mapping = json.loads(Path(config_file).read_text()) if config_file else None
        config = load_config(mapping)
        add_stacks(app, config=config, account=os.environ.get("CDK_DEFAULT_ACCOUNT"))
    except (OSError, ValueError, ToolkitError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    add_compliance_checks(app)
    app.synth()


if __name__ == "__main__":
    main()
