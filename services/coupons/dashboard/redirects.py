"""Where a campaign page's form goes once its action ran: back to the campaign page (303),
to the section the form is in, saying what refused the action (`?refused=<code>`, with
`&field=<field>` when the form's values were not valid), which the page shows; or, when the
action succeeded, with what the action returns (such as `?batch=<id>`, whose progress the
page then shows)."""

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from services.coupons.service.refusals import Refused


async def back_to_campaign(
    campaign_id: str, section: str | None, action: Callable[[], Awaitable[str]]
) -> RedirectResponse:
    """Run `action` (it returns the query to add on success, or ""); redirect to the
    campaign's page at `#section`, with the refusal if it refused."""
    page = f"/campaigns/{quote(campaign_id)}"
    anchor = f"#{section}" if section else ""
    try:
        query = await action()
    except ValidationError as error:
        where = ".".join(str(p) for p in error.errors()[0]["loc"])
        return RedirectResponse(f"{page}?refused=invalid_request&field={where}{anchor}", 303)
    except Refused as error:
        return RedirectResponse(f"{page}?refused={quote(error.code)}{anchor}", 303)
    return RedirectResponse(f"{page}{query}{anchor}", status_code=303)
