"""The shape of the GitLab events the bot reads, checked at the door.

A body can be valid JSON, storable by both databases, and still not be an event the bot
can act on: an ``iid`` given as text, ``object_attributes`` given as a list. Such a
delivery would be stored, acknowledged, then fail at every retry until dead-lettered.
So the fields the handlers read are typed here (strictly: GitLab sends numbers as JSON
numbers) and a body that does not fit is refused with 400 before anything is stored.
Every other field passes as it is (``extra="allow"``), and a missing field is fine: the
handlers ignore an event that lacks what they need.

Sources: GitLab ``doc/user/project/integrations/webhook_events.md`` (Comment events,
Merge request events) and ``doc/administration/system_hooks.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class HookUser(_Open):
    id: int | None = None
    username: str | None = None


class HookProject(_Open):
    id: int | None = None
    path_with_namespace: str | None = None


class HookMergeRequest(_Open):
    """``merge_request`` of a Note Hook, ``object_attributes`` of a Merge Request Hook."""

    id: int | None = None
    iid: int | None = None
    title: str | None = None
    url: str | None = None
    state: str | None = None
    action: str | None = None
    author_id: int | None = None
    target_project_id: int | None = None
    draft: bool | None = None
    work_in_progress: bool | None = None
    reviewer_ids: list[int] | None = None


class NoteAttributes(_Open):
    id: int | None = None
    note: str | None = None
    noteable_type: str | None = None
    system: bool | None = None
    action: str | None = None
    url: str | None = None


class Change(_Open):
    previous: Any = None
    current: Any = None


class NoteHook(_Open):
    user: HookUser | None = None
    project: HookProject | None = None
    object_attributes: NoteAttributes | None = None
    merge_request: HookMergeRequest | None = None


class MergeRequestHook(_Open):
    user: HookUser | None = None
    project: HookProject | None = None
    object_attributes: HookMergeRequest | None = None
    reviewers: list[HookUser] | None = None
    changes: dict[str, Change] | None = None


SHAPES: dict[str, type[_Open]] = {"note": NoteHook, "merge_request": MergeRequestHook}


def shape_problem(kind: str, payload: Mapping[str, Any]) -> str | None:
    """Why ``payload`` (an event of ``kind``) is not one the bot can act on, as one line
    naming the field (``object_attributes.iid: expected an integer``); None when it is."""
    shape = SHAPES.get(kind)
    if shape is None:
        return None
    try:
        shape.model_validate(payload)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        expected = {
            "int_type": "an integer",
            "string_type": "a string",
            "bool_type": "true or false",
            "model_type": "an object",
            "dict_type": "an object",
            "list_type": "a list",
        }.get(first["type"])
        return f"{where}: expected {expected}" if expected else f"{where}: {first['msg']}"
    return None
