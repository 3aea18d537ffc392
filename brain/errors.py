"""Domain errors of brain; the CLI (and later the HTTP service) map them to messages and exit codes."""


class BrainError(Exception):
    """Base class of every error brain raises on purpose."""


class SourceError(BrainError):
    """A source cannot be read at all (missing file, missing column, unknown CRS): the run stops."""

    def __init__(self, message: str, source: str | None = None):
        self.source = source
        super().__init__(f"source {source!r}: {message}" if source else message)


class ManifestError(BrainError):
    """The manifest itself is malformed."""


class BackendError(BrainError):
    """The database URL or the database cannot be used."""


class NotAuthenticated(BrainError):
    """No token, or a token that belongs to nobody (HTTP 401)."""


class Forbidden(BrainError):
    """The thing exists but lies outside the user's scope or role (HTTP 403)."""


class NotFound(BrainError):
    """No such layer, unit, building or metric (HTTP 404)."""


class BadRequest(BrainError):
    """A request that cannot be answered as asked: bad tile address, malformed GeoJSON (HTTP 400)."""


class TooLarge(BrainError):
    """A request body or geometry over the configured limits (HTTP 413)."""


class Throttled(BrainError):
    """Too many failed attempts (sign-in): wait, as the message says (HTTP 429)."""


#: The one table from brain's errors to HTTP codes (the service and the dashboards both answer by it).
HTTP_STATUS: dict[type[BrainError], int] = {
    NotAuthenticated: 401, Forbidden: 403, NotFound: 404, BadRequest: 400, TooLarge: 413, Throttled: 429,
    BrainError: 400,
}


def http_status(exc: BrainError) -> int:
    """The HTTP code answering `exc` (the most specific class in HTTP_STATUS)."""
    return next(code for cls, code in HTTP_STATUS.items() if isinstance(exc, cls))
