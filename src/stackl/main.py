"""The root ``stackl`` command: the REST-client verbs of ``cli`` plus the process commands.

Process commands (server, demo, db) import their heavy dependencies inside the command, so client verbs start fast.
"""

import typer

from stackl.cli import root
from stackl.processes import agent, db, demo, server, worker

app = typer.Typer(
    name="stackl",
    help="STACKL: model infrastructure, describe applications, automate their orchestration.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
root.register(app)
app.command("server")(server.server)
app.command("demo")(demo.demo)
app.command("agent")(agent.agent)
app.command("worker")(worker.worker)
app.add_typer(db.app, name="db")
