"""Allow `python -m stackl` as an alias of the `stackl` command."""

from stackl.main import app

app()
