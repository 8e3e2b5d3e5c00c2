"""The root ``stackl`` command: the REST-client verbs of ``cli`` plus the process commands.

Every command is loaded when it runs (``cli.lazy``): ``stackl --help``, tab completion and each client verb
import only what they need, and the process commands (server, worker, agent, demo, db) keep their heavy imports
out of the client's way.
"""

import typer

from stackl.cli import root
from stackl.cli.lazy import Lazy, lazy_group

PROCESSES: dict[str, Lazy] = {
    "server": Lazy(
        "stackl.processes.server:server", "Run the STACKL API server (embedded SQLite by default)."
    ),
    "demo": Lazy(
        "stackl.processes.demo:demo",
        "Run an embedded STACKL server with the bundled example loaded (SQLite, loopback).",
    ),
    "agent": Lazy(
        "stackl.processes.agent:agent", "Run an agent: pull jobs for NAME from the server and run them."
    ),
    "worker": Lazy(
        "stackl.processes.worker:worker", "Run a worker: claim tasks from the database and run them."
    ),
    "db": Lazy("stackl.processes.db:app", "Database schema migrations."),
}

app = typer.Typer(
    name="stackl",
    help="STACKL: model infrastructure, describe applications, automate their orchestration.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's help layout: rich's costs ~160 ms of imports per call (cli.lazy)
    cls=lazy_group({**root.COMMANDS, **PROCESSES}),
)
root.register(app)
