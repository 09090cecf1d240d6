"""A campaign page's form goes back to the page: with the action's query on success, with the
refusal's code (and the field of invalid values) when it refused."""

from pydantic import BaseModel

from services.coupons.dashboard.redirects import back_to_campaign
from services.coupons.service.refusals import Refused


class Count(BaseModel):
    count: int


async def test_a_success_goes_to_the_section_with_the_actions_query() -> None:
    async def action() -> str:
        return "?batch=b1"

    response = await back_to_campaign("c 1", "codes", action)
    assert response.status_code == 303
    assert response.headers["location"] == "/campaigns/c%201?batch=b1#codes"


async def test_a_refusal_goes_back_with_its_code_and_no_section_when_none_is_named() -> None:
    async def action() -> str:
        raise Refused("stripe_not_configured", "STRIPE_API_KEY is not set")

    response = await back_to_campaign("c1", None, action)
    assert response.headers["location"] == "/campaigns/c1?refused=stripe_not_configured"


async def test_invalid_values_go_back_with_the_field() -> None:
    async def action() -> str:
        return str(Count.model_validate({"count": "many"}).count)

    response = await back_to_campaign("c1", "codes", action)
    assert response.headers["location"] == (
        "/campaigns/c1?refused=invalid_request&field=count#codes"
    )
