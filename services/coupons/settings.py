"""Configuration, from the environment only. Every variable is listed in the README."""

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contracts.commands import MAX_EXPIRY_DAYS
from services.coupons.domain.guessing import Limit, Limits

Component = Literal["decider", "projector", "batches", "stripe", "contacts"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    kafka_bootstrap_servers: str = Field(validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    database_url: str = Field(validation_alias="DATABASE_URL")
    host: str = Field("127.0.0.1", validation_alias="COUPONS_HOST")
    port: int = Field(8000, validation_alias="COUPONS_PORT")
    workers: int = Field(1, ge=1, le=64, validation_alias="COUPONS_WORKERS")
    components: Annotated[tuple[Component, ...], NoDecode] = Field(
        ("decider", "projector", "batches", "stripe", "contacts"),
        validation_alias="COUPONS_COMPONENTS",
    )
    topic_prefix: str = Field("", validation_alias="COUPONS_TOPIC_PREFIX")
    partitions: int = Field(6, ge=1, validation_alias="COUPONS_PARTITIONS")
    replication_factor: int = Field(1, ge=1, validation_alias="COUPONS_REPLICATION_FACTOR")
    default_expiry_days: int = Field(
        30, ge=1, le=MAX_EXPIRY_DAYS, validation_alias="COUPONS_DEFAULT_EXPIRY_DAYS"
    )
    max_body_bytes: int = Field(
        524_288, ge=1024, le=786_432, validation_alias="COUPONS_MAX_BODY_BYTES"
    )
    throttle_failures: int = Field(10, ge=1, validation_alias="COUPONS_THROTTLE_FAILURES")
    throttle_address_failures: int = Field(
        30, ge=1, validation_alias="COUPONS_THROTTLE_ADDRESS_FAILURES"
    )
    throttle_key_failures: int = Field(1000, ge=1, validation_alias="COUPONS_THROTTLE_KEY_FAILURES")
    throttle_window_s: float = Field(60.0, ge=1, validation_alias="COUPONS_THROTTLE_WINDOW_S")
    trusted_proxies: str = Field("", validation_alias="COUPONS_TRUSTED_PROXIES")
    command_timeout_s: float = Field(10.0, gt=0, validation_alias="COUPONS_COMMAND_TIMEOUT_S")
    ready_max_lag: int = Field(100, ge=0, validation_alias="COUPONS_READY_MAX_LAG")
    contact_dedupe_days: int = Field(
        30, ge=1, le=3650, validation_alias="COUPONS_CONTACT_DEDUPE_DAYS"
    )
    contact_consumers: int = Field(2, ge=1, le=64, validation_alias="COUPONS_CONTACT_CONSUMERS")
    """Contacts processors in each process, sharing the partitions of the contact events
    (docs/performance/contacts.md)."""
    automation_contact_cap: int = Field(
        1, ge=0, le=1000, validation_alias="COUPONS_AUTOMATION_CONTACT_CAP"
    )
    """At most this many automated coupons (automations and broadcasts) per contact within
    `automation_cap_days`; 0: no global cap."""
    automation_cap_days: int = Field(
        30, ge=1, le=365, validation_alias="COUPONS_AUTOMATION_CAP_DAYS"
    )
    snapshot_every: int = Field(100_000, ge=1, validation_alias="COUPONS_SNAPSHOT_EVERY")
    """Events appended to a partition between two snapshots of its state."""
    idempotency_window_s: float = Field(
        86_400.0, ge=1, le=30 * 86_400, validation_alias="COUPONS_IDEMPOTENCY_WINDOW_S"
    )
    """How long an idempotency key is remembered (then a reused key is a new request)."""
    log_level: str = Field("INFO", validation_alias="COUPONS_LOG_LEVEL")
    log_format: Literal["json", "console"] | None = Field(
        None, validation_alias="COUPONS_LOG_FORMAT"
    )
    """None: coloured console lines when stdout is a terminal, else JSON."""
    stripe_webhook_secret: str | None = Field(None, validation_alias="STRIPE_WEBHOOK_SECRET")
    stripe_webhook_tolerance_s: int = Field(
        300, ge=1, validation_alias="STRIPE_WEBHOOK_TOLERANCE_S"
    )
    stripe_api_key: str | None = Field(None, validation_alias="STRIPE_API_KEY")
    stripe_api_base: str = Field("https://api.stripe.com", validation_alias="STRIPE_API_BASE")
    stripe_rate_limit: float = Field(25, gt=0, le=100, validation_alias="STRIPE_RATE_LIMIT")

    @property
    def guessing_limits(self) -> Limits:
        window = self.throttle_window_s
        return Limits(
            contact=Limit(self.throttle_failures, window),
            address=Limit(self.throttle_address_failures, window),
            key=Limit(self.throttle_key_failures, window),
        )

    @field_validator("components", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """`COUPONS_COMPONENTS=decider,projector`."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value
