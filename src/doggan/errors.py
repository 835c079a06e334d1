"""The error type for problems a user can fix: the CLI prints its message, not a traceback."""


class DogganError(Exception):
    """Bad input or setup, described in one message that names the file or key and the problem."""
