"""The one exception type for mistakes a user can make (bad input, missing files, wrong flags).

The CLI prints its message as a single `error: ...` line and exits with code 2; anything else is a bug and keeps
its traceback.
"""


class VifiError(Exception):
    """A user-facing error: the message is one line saying what is wrong, where, and what to do."""

    def __init__(self, message: str):
        message = str(message)
        # A DataLoader worker re-raises our error in the main process as the same type with the worker's whole
        # traceback as message; the user needs only the original last line.
        marker = f"{type(self).__name__}: "
        if "Original Traceback" in message and marker in message:
            message = message.rsplit(marker, 1)[1]
        super().__init__(" ".join(message.split()))


# Typed subclasses, so Python callers (`vifi.load`, `vifi serve`) can catch one kind of mistake; the CLI still
# catches VifiError and prints the same one line. docs/api.md lists which call raises which.
class CheckpointError(VifiError):
    """The model to load: a checkpoint, run folder or weights file missing, unreadable, not vifi's, of another
    architecture, or a Hub file that is not cached while offline."""


class VideoError(VifiError):
    """A video (or folder of videos) that is missing or cannot be decoded."""


class InputError(VifiError):
    """An argument's value: labels, views, frames, texts, top-k and the like."""
