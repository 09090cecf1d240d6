"""Static segments: a list of contact ids or emails uploaded as CSV, in chunks.

Define the segment with `POST /v1/segments {"id", "name", "kind": "static"}`, then send the
list to `POST /v1/segments/{id}/members` as `text/csv`, one contact id or email a row (the
first column; a header row `contact_id` or `email` is skipped), in as many requests as it
takes: each is at most the request body limit (`COUPONS_MAX_BODY_BYTES`, 512 KiB: about
20,000 ids), so 1,000,000 rows are some 50 requests, each added (and announced) in its own
transaction; a retried chunk adds nothing twice. An email is matched to the profile with
that email (case-insensitive); emails without a profile are counted as `unmatched`."""

import csv
import io
import time

from services.coupons.contacts import store
from services.coupons.runtime import Runtime
from services.coupons.service.refusals import Refused

MAX_ID = 128


async def upload(runtime: Runtime, segment_id: str, body: bytes) -> dict[str, int]:
    """Add a chunk of contact ids or emails (CSV) to a static segment: how many rows it had,
    how many members were added, how many emails matched no profile."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Refused("invalid_csv", "the body is not UTF-8 text", field="body") from error
    ids, emails = _rows(text)
    rows = len(ids) + len(emails)
    async with runtime.pool.acquire() as conn, conn.transaction():
        segment = await conn.fetchrow(
            "SELECT kind, version FROM segments WHERE id = $1 FOR UPDATE", segment_id
        )
        if segment is None:
            raise Refused("segment_not_found", f"no segment {segment_id}")
        if segment["kind"] != "static":
            raise Refused("segment_not_static", "only a static segment takes a list")
        found = await conn.fetch(
            """SELECT lower(email) AS email, min(contact_id) AS contact_id FROM contact_profiles
               WHERE lower(email) = ANY($1::text[]) GROUP BY lower(email)""",
            sorted(emails),
        )
        ids.extend(r["contact_id"] for r in found)
        cause = f"upload:{segment_id}"
        added = await store.add_static_members(
            conn, segment_id, segment["version"], ids, cause, int(time.time())
        )
    return {"rows": rows, "added": added, "unmatched": len(emails) - len(found)}


def _rows(text: str) -> tuple[list[str], set[str]]:
    ids: list[str] = []
    emails: set[str] = set()
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        value = row[0].strip() if row else ""
        if not value or (number == 1 and value.lower() in ("contact_id", "email")):
            continue
        if len(value) > MAX_ID or not value.isprintable():
            message = f"row {number}: not a contact id or email"
            raise Refused("invalid_csv", message, field=f"row {number}")
        if "@" in value:
            emails.add(value.lower())
        else:
            ids.append(value)
    return ids, emails
