"""The plain data a validation answers (`ValidationAnswer`, `CodeAnswer`) and the models that
document it (`ValidationResult`, `CodeResult`) name the same fields with the same types: mypy
checks the data against the typed dictionaries, this test the dictionaries against the
models, so neither can drift from `/openapi.json`."""

from typing import get_type_hints

import pytest
from pydantic import BaseModel

from services.coupons.service.checkout_models import (
    CodeAnswer,
    CodeResult,
    ValidationAnswer,
    ValidationResult,
)


@pytest.mark.parametrize(
    ("data", "model"),
    [(ValidationAnswer, ValidationResult), (CodeAnswer, CodeResult)],
    ids=["validation", "code"],
)
def test_the_answers_data_has_the_models_fields_and_types(
    data: type, model: type[BaseModel]
) -> None:
    fields = {name: field.annotation for name, field in model.model_fields.items()}
    hints = get_type_hints(data)
    if "codes" in hints:  # the list of the other pair: compared by its own case
        assert (hints.pop("codes"), fields.pop("codes")) == (list[CodeAnswer], list[CodeResult])
    assert hints == fields
