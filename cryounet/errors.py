"""User-facing errors.

Anything a user can cause (a bad file, a wrong option) raises :class:`CryoUNetError` with a message
that names the file or option and the problem; the CLI prints that one message and exits non-zero.
"""


class CryoUNetError(Exception):
    """An error caused by the user's input or environment, with a message meant for them."""


class InputFileError(CryoUNetError):
    """A micrograph, coordinate or model file that cannot be used."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem
