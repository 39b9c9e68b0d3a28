"""Subcommands of the ``medaudit`` CLI, one module each (``add_parser`` + ``run``)."""
