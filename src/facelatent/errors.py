"""Exception types that the CLI turns into one-line messages instead of tracebacks."""


class FacelatentError(Exception):
    """Base class for errors a user can act on; the message says what to do."""


class WeightsError(FacelatentError):
    """A model file is missing, corrupt, or could not be fetched."""


class FileFormatError(FacelatentError, ValueError):
    """A file is missing parts, damaged, of another kind, or too large; the message names it."""
