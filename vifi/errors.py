"""The one exception type for mistakes a user can make (bad input, missing files, wrong flags).

The CLI prints its message as a single `error: ...` line and exits with code 2; anything else is a bug and keeps
its traceback.
"""


class VifiError(Exception):
    """A user-facing error: the message is one line saying what is wrong, where, and what to do."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
