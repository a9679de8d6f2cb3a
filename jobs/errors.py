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


class Conflict(ValidationError):
    """The request fits, but not the object's state now (an image being generated, a task that ended)."""

    kind = "Conflict"
