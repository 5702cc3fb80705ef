"""Errors as RFC 9457 problem details (`application/problem+json`), each naming the problem."""
from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.common.metrics import REQUESTS_REJECTED

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    def __init__(self, status: int, slug: str, title: str, detail: str, errors: list[dict] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.slug, self.title, self.detail = status, slug, title, detail
        self.errors = errors
        self.headers = headers

    def response(self, instance: str | None = None) -> JSONResponse:
        body = {
            "type": f"https://crmsync.dev/problems/{self.slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = self.errors
        return JSONResponse(body, status_code=self.status, media_type=PROBLEM_JSON, headers=self.headers)


def field_errors(exc: ValidationError | RequestValidationError, drop_prefix: int = 0) -> list[dict]:
    """[{field: 'changes.3.module', message: ...}] for every offending field."""
    out = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ())][drop_prefix:]
        out.append({"field": ".".join(loc) or "body", "message": error.get("msg", "invalid")})
    return out


def invalid_body(exc: ValidationError | RequestValidationError, drop_prefix: int = 0) -> Problem:
    errors = field_errors(exc, drop_prefix)
    names = ", ".join(sorted({e["field"] for e in errors})[:10])
    return Problem(422, "invalid-body", "Invalid request body", f"invalid field(s): {names}", errors)


def install_problem_handlers(app) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        REQUESTS_REJECTED.labels(_endpoint(request), exc.slug).inc()
        return exc.response(request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        problem = invalid_body(exc)
        REQUESTS_REJECTED.labels(_endpoint(request), problem.slug).inc()
        return problem.response(request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return Problem(exc.status_code, slug, str(exc.detail), str(exc.detail)).response(request.url.path)


def _endpoint(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", "unknown")
