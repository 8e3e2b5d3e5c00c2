"""The async REST client used by the CLI."""
