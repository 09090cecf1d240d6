"""Background jobs (code batches, Stripe mirrors) as the one shape `_progress.html` draws: a
progress bar the campaign page refreshes in place until the job is done."""

from datetime import datetime
from typing import Any, TypedDict


class Progress(TypedDict):
    id: str
    url: str
    """The fragment's own address, polled while the job runs."""
    what: str
    done: int
    total: int
    status: str
    error: str | None
    created_at: datetime


def code_batch(batch: dict[str, Any]) -> Progress:
    return Progress(
        id=batch["id"],
        url=f"/code-batches/{batch['id']}",
        what=f"{batch['requested']:,} codes",
        done=batch["generated"],
        total=batch["requested"],
        status=batch["status"],
        error=batch["error"],
        created_at=batch["created_at"],
    )


def stripe_mirror(job: dict[str, Any]) -> Progress:
    return Progress(
        id=job["id"],
        url=f"/stripe-mirrors/{job['id']}",
        what="Mirror to Stripe" + (f" (coupon {job['coupon_id']})" if job["coupon_id"] else ""),
        done=job["mirrored"],
        total=job["total"],
        status=job["status"],
        error=job["error"],
        created_at=job["created_at"],
    )
