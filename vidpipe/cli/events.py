"""``vidpipe events``: the events of a service's event store (``output_dir/events.db``), as a table or
as JSON Lines, newest first."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import VidpipeError
from ..rules import checked, count

EXAMPLES = """examples:
  vidpipe events --config vidpipe.yaml                               # the last 50, as a table
  vidpipe events --db recordings/events.db --stream door --type line_crossed --since 2026-12-04T14:00
  vidpipe events --config vidpipe.yaml --since 1764856800 --json | jq .snapshot"""
COLUMNS = ("id", "time", "stream", "type", "label", "track_id", "where", "score", "snapshot", "clip")


class EventsError(VidpipeError):
    exit_code = 2


def add_command(command, examples: dict[str, str]) -> None:
    """The subcommand's parser (what it reads is imported when it runs: other commands never pay for it)."""
    examples["events"] = EXAMPLES
    p = command("events", "list the events of a service's event store (output_dir/events.db)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", metavar="FILE", help="the service's YAML configuration (its output_dir)")
    where.add_argument("--db", metavar="FILE", help="the event store itself (events.db)")
    p.add_argument("--stream", help="only this stream's events")
    p.add_argument("--type", help="only events of this type (line_crossed, zone_entered, zone_left, ...)")
    p.add_argument("--label", help="only events of objects with this label")
    p.add_argument("--since", metavar="T", help="from this time: ISO 8601 (UTC when no zone) or epoch seconds")
    p.add_argument("--until", metavar="T", help="up to this time: ISO 8601 (UTC when no zone) or epoch seconds")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="at most N events (default: 50)")
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..serve.config import ConfigError, load_config
    from ..serve.events import DB_NAME, StoreError, connect, parse_time, query

    times = []
    for option, value in (("--since", args.since), ("--until", args.until)):
        try:
            times.append(parse_time(value))
        except ValueError as exc:
            raise EventsError(f"{option}: {exc}") from None
    since, until = times
    limit = checked("--limit", count, args.limit)
    if args.db is not None:
        path = Path(args.db)
    else:
        try:
            path = Path(load_config(args.config).output_dir) / DB_NAME
        except ConfigError as exc:
            raise EventsError("; ".join(exc.problems)) from None
    try:
        db = connect(path)
        try:
            found = query(db, stream=args.stream, type=args.type, label=args.label, since=since, until=until,
                          limit=limit)  # fmt: skip
        finally:
            db.close()
    except StoreError as exc:
        raise EventsError(f"event store {exc}") from None
    if args.json:
        for record in found:
            print(json.dumps(record), flush=False)
        return 0
    rows = [[_cell(record, key) for key in COLUMNS] for record in found]
    widths = [max([len(key)] + [len(row[i]) for row in rows]) for i, key in enumerate(COLUMNS)]
    for row in [list(COLUMNS), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if not rows:
        print("(no events)", file=sys.stderr)
    return 0


def _cell(record: dict, key: str) -> str:
    if key == "where":
        place = record.get("line") or record.get("zone") or ""
        return f"{place} {record['direction']}" if record.get("direction") else place
    value = record.get(key)
    if key == "score" and value is not None:
        return f"{value:.2f}"
    return "" if value is None else str(value)
