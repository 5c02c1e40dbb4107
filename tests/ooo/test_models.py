"""The ooo area's table on both engines: a period's dates are ordered."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.models import User
from plugins.ooo.models import OooStatus

Sessions = async_sessionmaker[AsyncSession]


async def _user(sessions: Sessions, name: str = "alice") -> int:
    async with sessions.begin() as session:
        user = User(gitlab_username=name)
        session.add(user)
        await session.flush()
        return user.id


async def test_ooo_end_before_start_is_refused(sessions: Sessions) -> None:
    user_id = await _user(sessions)
    with pytest.raises(IntegrityError):
        async with sessions.begin() as session:
            session.add(
                OooStatus(user_id=user_id, start_date=date(2026, 12, 5), end_date=date(2026, 12, 1))
            )
