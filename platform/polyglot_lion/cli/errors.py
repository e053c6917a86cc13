"""The one error a command raises for bad input (its own module, so that every command module and ``main`` share it
without importing each other)."""


class UsageError(Exception):
    """Bad input from the user: printed as one clear message, exit status 2."""
