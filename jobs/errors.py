"""Errors the AI framework raises on purpose; their messages are shown to staff as they are."""


class AIFunctionError(Exception):
    """A readable failure of a task or of one item."""

    kind = "ExecutionError"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ValidationError(AIFunctionError):
    """Bad input or configuration, found before anything is queued or called."""

    kind = "ValidationError"


class NotFound(AIFunctionError):
    kind = "NotFound"
