"""The one exception type the CLI turns into a one-line message, and what reports say of other failures."""

import traceback


class McqError(Exception):
    """A user-facing error: bad input, a file that cannot be used, a request mcq cannot honour.

    The message names the file (when there is one) and what to do; the CLI prints it on one line.
    """


def first_line(e: BaseException, limit: int = 300) -> str:
    """The first line of ``e``'s message (its type's name when it has none), at most ``limit`` characters: the
    reason a report gives for an artifact or a cell that failed."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:limit]


def failure(e: BaseException) -> dict:
    """What a report says of a failure it carries on past (an artifact, a profile cell): ``why``, its first line,
    and, for an error that is not one of mcq's own, the ``traceback`` that ``mcq --debug`` prints."""
    found = {"why": first_line(e)}
    if not isinstance(e, McqError):
        found["traceback"] = "".join(traceback.format_exception(e))
    return found
