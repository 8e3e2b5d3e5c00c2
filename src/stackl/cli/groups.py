"""The verb groups made of commands from several modules (``create``, ``policy``, ``update``).

Each is loaded only when used (``cli.lazy``): ``stackl create snapshot`` imports the modules of ``create``, not
those of every command.
"""

import typer

from stackl.cli import create, instances, policy
from stackl.cli.lazy import HELP_SETTINGS

create_app = typer.Typer(
    name="create", help="Create stack instances, snapshots and policy templates.", no_args_is_help=True
)
create_app.command("snapshot", context_settings=HELP_SETTINGS)(create.snapshot)
create_app.command("policy", context_settings=HELP_SETTINGS)(create.policy)
create_app.command("instance", context_settings=HELP_SETTINGS)(instances.create)

policy_app = typer.Typer(name="policy", help="Evaluate Rego policies on the server.", no_args_is_help=True)
policy_app.command("eval", context_settings=HELP_SETTINGS)(policy.evaluate)

update_app = typer.Typer(
    name="update", help="Update stack instances and their outputs.", no_args_is_help=True
)
update_app.command("instance", context_settings=HELP_SETTINGS)(instances.update_instance)
update_app.command("outputs", context_settings=HELP_SETTINGS)(instances.update_outputs)
