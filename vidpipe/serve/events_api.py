"""The API of events: ``/api/events`` (from the event store, filtered and paged, newest first; the recent
events kept in memory when there is no store), one event, its snapshot."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, HTTPException, Path, Query
from fastapi.responses import FileResponse

from .events import ANALYTICS, MAX_INTEGER, StoreError, parse_time
from .service import Service

EventId = Annotated[int, Path(ge=1, le=MAX_INTEGER, description="an event's id")]


def _time(value: str | None, name: str) -> float | None:
    try:
        return parse_time(value)
    except ValueError as exc:
        raise HTTPException(422, f"{name}: {exc}") from None


def add_event_routes(app: FastAPI, service: Service) -> None:
    @app.get("/api/events")
    def events(
        limit: int = Query(200, ge=1, le=1000),
        stream: str | None = None,
        type: str | None = None,
        label: str | None = None,
        since: str | None = Query(None, description="ISO 8601 (UTC when no zone) or epoch seconds"),
        until: str | None = Query(None, description="ISO 8601 (UTC when no zone) or epoch seconds"),
        before_id: int | None = Query(None, ge=1, le=MAX_INTEGER, description="the next page: ids below the last seen"),
    ) -> list[dict]:
        """Events newest first from the event store (filtered, paged by ``before_id``); without a store,
        the recent ones kept in memory (the last 1000), newest last, filtered alike."""
        start, end = _time(since, "since"), _time(until, "until")
        store = service.store
        if store is None:
            found = [e for e in service.events(1000) if _matches(e, stream, type, label, start, end)]
            return found[-limit:]
        try:
            return store.query(stream=stream, type=type, label=label, since=start, until=end, limit=limit,
                               before_id=before_id)  # fmt: skip
        except StoreError as exc:
            raise HTTPException(503, f"the event store cannot be read: {exc}") from None

    @app.get("/api/events/{event_id}")
    def event(event_id: EventId) -> dict:
        return _event(service, event_id)

    @app.get("/api/events/{event_id}/snapshot.jpg")
    def snapshot(event_id: EventId) -> FileResponse:
        record = _event(service, event_id)
        file = service.store.snapshot_file(record)
        if file is None:
            why = "its snapshot file is gone" if record.get("snapshot") else "no snapshot was taken for it"
            raise HTTPException(404, f"event {event_id}: {why}")
        return FileResponse(file, media_type="image/jpeg")

    @app.api_route("/api/events/{event_id}/clip.mp4", methods=["GET", "HEAD"])
    def clip(event_id: EventId) -> FileResponse:
        """The event's clip (fragmented MP4, H.264): 404 with the reason until it is ready; 410 once
        retention deleted it."""
        record = _event(service, event_id)
        file = service.store.snapshot_file(record, "clip")
        if file is not None:
            return FileResponse(file, media_type="video/mp4")
        if record.get("evicted"):
            raise HTTPException(410, f"event {event_id}: its clip was deleted by retention")
        raise HTTPException(404, f"event {event_id}: {_no_clip(service, record)}")


def _event(service: Service, event_id: int) -> dict:
    if service.store is None:
        raise HTTPException(404, "no event store (events are kept in memory only: see /api/events)")
    try:
        record = service.store.get(event_id)
    except StoreError as exc:
        raise HTTPException(503, f"the event store cannot be read: {exc}") from None
    if record is None:
        raise HTTPException(404, f"no event {event_id}")
    return record


def _no_clip(service: Service, record: dict) -> str:
    """Why an event has no clip (yet)."""
    if record.get("clip_ready"):
        return "its clip file is gone"
    if record.get("clip_failed"):
        return f"no clip was made: {record['clip_failed']}"
    if service.clips is None or record["stream"] not in service.clips.rolls:
        return "no clips are made for its stream (events: clips: not configured)"
    if record["type"] not in ANALYTICS:
        return "clips are made for line, zone and loitering events only"
    if service.clips.pending(record["id"]):
        post_roll = service.clips.rolls.get(record["stream"], (0.0, 0.0))[1]
        return f"not ready yet (its post-roll ends {post_roll:g} s after {record['time']})"
    return "no clip was made (no video was recorded around it, or it could not be written: see the log)"


def _matches(event: dict, stream, kind, label, since, until) -> bool:
    return (
        (stream is None or event.get("stream") == stream)
        and (kind is None or event.get("event") == kind)
        and (label is None or event.get("label") == label)
        and (since is None or event.get("wall", 0) >= since)
        and (until is None or event.get("wall", 0) <= until)
    )
