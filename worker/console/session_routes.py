"""Ending other people's sessions: an admin's "log out everywhere" for one user.

`POST /api/users/{name}/sessions/end` (admin; Bearer, or a session with its CSRF token) ends
every live session of `name` at once, e.g. when a laptop is lost or a token leaked.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from worker.console.auth import Authenticator, Role, User
from worker.console.guard import may_change
from worker.log import get_logger

router = APIRouter(prefix="/api")
log = get_logger(__name__)


@router.post("/users/{name}/sessions/end")
def end_sessions(
    request: Request, name: str, user: User = Depends(may_change(Role.ADMIN))
) -> JSONResponse:
    """End every session of `name`; answers how many were live."""
    auth: Authenticator = request.app.state.auth
    ended = auth.sessions.end_user(name)
    log.info("console_sessions_ended", user=name, ended=ended, by=user.name)
    return JSONResponse({"user": name, "ended": ended})
