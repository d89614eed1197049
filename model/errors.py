"""The one exception type that means "the user gave us something wrong".

Everything a user can fix (a missing file, a wrong column, a broken model directory)
raises `UserError`; the CLI prints its message as one line and exits non-zero.
Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, with a message that says what to do."""
