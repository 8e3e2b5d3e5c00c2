"""STACKL: model infrastructure, describe applications, automate their orchestration."""

__version__ = "0.1.0"
