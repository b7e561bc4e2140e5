"""Subcommands of a later stage (filled in by its issue)."""


def register(sub, common) -> None:
    """Add this module's subcommands."""
