"""The one exception type the CLI turns into a one-line message."""


class McqError(Exception):
    """A user-facing error: bad input, a file that cannot be used, a request mcq cannot honour.

    The message names the file (when there is one) and what to do; the CLI prints it on one line.
    """
