"""The one error type that entry points print as a single line instead of a traceback."""


class CamlitError(ValueError):
    """A mistake in the user's input: a file, a folder, an argument. The message names it."""
