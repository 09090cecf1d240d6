"""The campaign forms as the API's bodies: typed only as far as HTML cannot say, validated by
the API's own models, their errors named by the form's fields."""

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from services.coupons.api.campaigns import CampaignRequest
from services.coupons.dashboard import campaign_form
from services.coupons.dashboard.pages.new_campaign import FIELDS


def test_a_form_becomes_the_apis_body() -> None:
    form = {
        "name": "Spring",
        "discount.kind": "amount",
        "discount.amount_off": "500",
        "discount.percent_off": "20",  # the other kind's field is not sent
        "discount.currency": "EUR",
        "limits.per_contact": "",
        "limits.max_redemptions": " 100 ",
        "validity.expires_at": "2030-01-31T12:30",
        "eligibility.products": "plan_pro, plan_team\nplan_max",
        "eligibility.stackable": "on",
    }
    sent = campaign_form.body(form, (*campaign_form.discount_fields(form), *FIELDS))
    assert sent["discount"] == {"kind": "amount", "amount_off": 500, "currency": "EUR"}
    assert sent["limits"]["per_contact"] is None  # blank: unlimited, not the default 1
    assert sent["limits"]["max_redemptions"] == 100
    assert "reservation_ttl_s" not in sent["limits"]  # blank: the API's default
    assert sent["eligibility"]["products"] == ["plan_pro", "plan_team", "plan_max"]
    assert sent["eligibility"]["stackable"] is True
    assert sent["eligibility"]["bound_to_contact"] is False  # an unticked box
    request = CampaignRequest.model_validate(sent)
    assert request.validity.expires_at == datetime(2030, 1, 31, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("discount.percent_off", "150", "discount.percent_off"),
        ("limits.per_contact", "two", "limits.per_contact"),
        ("limits.budget", "0", "limits.budget"),
        ("validity.expires_at", "tomorrow", "validity.expires_at"),
    ],
)
def test_a_bad_value_is_refused_by_the_api_model_beside_its_field(
    field: str, value: str, named: str
) -> None:
    form = {"name": "Spring", "discount.kind": "percent", "discount.percent_off": "20"}
    form[field] = value
    with pytest.raises(ValidationError) as refused:
        CampaignRequest.model_validate(
            campaign_form.body(form, (*campaign_form.discount_fields(form), *FIELDS))
        )
    error = campaign_form.invalid(refused.value)
    assert (error.code, error.field) == ("invalid_request", named)


def test_changed_terms_send_only_what_changed() -> None:
    current = {
        "validity": {"starts_at": None, "expires_at": "2030-01-31T12:30:45.123456+00:00"},
        "limits": {"max_redemptions": None, "per_contact": 1, "budget": 5000},
        "eligibility": {"products": ["plan_pro"], "stackable": False, "bound_to_contact": True},
    }
    shown = {"name": "Spring"}
    for part, terms in current.items():
        shown.update(campaign_form.values(part, terms))
    assert shown["validity.expires_at"] == "2030-01-31T12:30"
    form = {**shown, "limits.per_contact": "3", "eligibility.products": ""}
    assert campaign_form.changes(form, shown, campaign_form.RULES) == {
        "limits": {"per_contact": 3},
        "eligibility": {"products": []},
    }  # the expiry shown to the minute is not sent back truncated
