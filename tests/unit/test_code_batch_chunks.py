from contracts.commands import MAX_CHUNK_CODES, AddCodes
from contracts.envelope import Envelope
from contracts.rules import CodePattern
from services.coupons.code_batches import chunk_size
from services.coupons.domain.codes import generate, normal_form

KAFKA_MESSAGE_BYTES = 1_000_000
"""Below Kafka's default limit (1 MiB), with room for the record's key and headers."""


def test_default_codes_come_in_the_largest_chunks() -> None:
    assert chunk_size(CodePattern()) == MAX_CHUNK_CODES


def test_a_chunk_of_the_longest_codes_still_fits_in_one_message() -> None:
    pattern = CodePattern(prefix="SUMMER-2026-", length=50, group=5)
    size = chunk_size(pattern)
    codes = tuple(generate(normal_form(pattern), size))
    command = AddCodes(campaign_id="c1", batch_id="b" * 64, chunk=10**6, codes=codes)
    envelope = Envelope[AddCodes](
        key="c1", correlation_id="batch-" + "b" * 64, actor="admin", data=command
    )
    assert size < MAX_CHUNK_CODES
    assert len(envelope.to_bytes()) <= KAFKA_MESSAGE_BYTES
