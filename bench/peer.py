"""The row-lock peer: what a team would build instead of the engine, the straightforward way.

FastAPI + asyncpg on the same PostgreSQL, served by uvicorn as `coupons serve` is (uvloop,
httptools, no access log, one process). `POST /v1/validations` reads the coupon row;
`POST /v1/redemptions` locks it (`SELECT ... FOR UPDATE`), answers a repeated
`Idempotency-Key` with the first redemption, checks the cap, inserts the redemption row (the
key is unique) and counts it, in one transaction. The requests and the answers have the
engine's shape for what `bench/checkout.py` sends (one code, a cart, a customer, an order),
so both servers take the same load. A yardstick, not a product: one code, an amount off.

    python bench/peer.py --port 8001   (DATABASE_URL, BENCH_KEY and BENCH_CODES from the
    environment; it creates its tables and the codes' rows if they are missing)
"""

import argparse
import hmac
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import uvicorn
from fastapi import FastAPI, Header, HTTPException, Request, Response
from pydantic import BaseModel, Field

SCHEMA = """
CREATE TABLE IF NOT EXISTS coupons (
    code text PRIMARY KEY,
    campaign_id text NOT NULL,
    currency text NOT NULL,
    amount_off bigint NOT NULL,
    cap bigint,  -- total redemptions allowed; NULL: no cap
    redeemed bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS redemptions (
    redemption_id text PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    campaign_id text NOT NULL,
    code text NOT NULL REFERENCES coupons,
    contact_id text NOT NULL,
    order_ref text NOT NULL,
    currency text NOT NULL,
    amount bigint NOT NULL,
    discount bigint NOT NULL,
    total bigint NOT NULL,
    redeemed_at timestamptz NOT NULL DEFAULT now()
);
"""
AMOUNT_OFF = 500  # as bench/checkout.py's campaign: 5.00 EUR off


class Customer(BaseModel):
    contact_id: Annotated[str, Field(min_length=1, max_length=200)]
    email: Annotated[str | None, Field(max_length=320)] = None


class Cart(BaseModel):
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    amount: Annotated[int, Field(ge=0, le=10**12)]


class ValidationRequest(BaseModel):
    code: Annotated[str, Field(min_length=1, max_length=100)]
    customer: Customer
    cart: Cart


class RedemptionRequest(ValidationRequest):
    order_ref: Annotated[str, Field(min_length=1, max_length=200)]


class Refusal(BaseModel):
    code: str
    message: str


class CodeResult(BaseModel):
    code: str
    campaign_id: str | None
    valid: bool
    discount: int
    refusal: Refusal | None


class ValidationResult(BaseModel):
    valid: bool
    code: str
    campaign_id: str | None
    amount: int
    discount: int
    total: int
    refusal: Refusal | None
    codes: list[CodeResult]


class Redemption(BaseModel):
    redemption_id: str
    campaign_id: str
    code: str
    contact_id: str
    order_ref: str
    currency: str
    amount: int
    discount: int
    total: int
    redeemed_at: datetime
    reversed_at: datetime | None = None
    reversal_reason: str | None = None
    stacked: list["Redemption"] = []


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=4, max_size=16)
    assert pool is not None
    async with pool.acquire() as conn:
        await conn.execute(SCHEMA)
        for code in os.environ["BENCH_CODES"].split(","):
            await conn.execute(
                "INSERT INTO coupons (code, campaign_id, currency, amount_off)"
                " VALUES ($1, $2, 'EUR', $3) ON CONFLICT DO NOTHING",
                code,
                str(uuid.uuid4()),
                AMOUNT_OFF,
            )
    app.state.pool = pool
    yield
    await pool.close()


app = FastAPI(title="row-lock peer", lifespan=lifespan)


def authorise(authorization: str | None) -> None:
    expected = f"Bearer {os.environ['BENCH_KEY']}"
    if authorization is None or not hmac.compare_digest(authorization, expected):
        raise HTTPException(401, "a valid API key is required")


def discount_of(coupon: asyncpg.Record, cart: Cart) -> tuple[int, Refusal | None]:
    if coupon["currency"] != cart.currency:
        return 0, Refusal(code="currency_mismatch", message="the cart's currency differs")
    if coupon["cap"] is not None and coupon["redeemed"] >= coupon["cap"]:
        return 0, Refusal(code="exhausted", message="this code has been fully redeemed")
    return min(coupon["amount_off"], cart.amount), None


@app.post("/v1/validations", response_model=ValidationResult)
async def validate(
    body: ValidationRequest,
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
) -> ValidationResult:
    authorise(authorization)
    async with request.app.state.pool.acquire() as conn:
        coupon = await conn.fetchrow("SELECT * FROM coupons WHERE code = $1", body.code)
    if coupon is None:
        discount, refusal = 0, Refusal(code="unknown_code", message="no such code")
    else:
        discount, refusal = discount_of(coupon, body.cart)
    campaign_id = coupon["campaign_id"] if coupon else None
    return ValidationResult(
        valid=refusal is None,
        code=body.code,
        campaign_id=campaign_id,
        amount=body.cart.amount,
        discount=discount,
        total=body.cart.amount - discount,
        refusal=refusal,
        codes=[
            CodeResult(
                code=body.code,
                campaign_id=campaign_id,
                valid=refusal is None,
                discount=discount,
                refusal=refusal,
            )
        ],
    )


@app.post("/v1/redemptions", status_code=201, response_model=Redemption)
async def redeem(
    body: RedemptionRequest,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str, Header(min_length=1, max_length=255)],
    authorization: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    authorise(authorization)
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        coupon = await conn.fetchrow("SELECT * FROM coupons WHERE code = $1 FOR UPDATE", body.code)
        if coupon is None:
            raise HTTPException(404, "no such code")
        first = await conn.fetchrow(
            "SELECT * FROM redemptions WHERE idempotency_key = $1", idempotency_key
        )
        if first is None:
            discount, refusal = discount_of(coupon, body.cart)
            if refusal is not None:
                raise HTTPException(409, refusal.model_dump())
            first = await conn.fetchrow(
                "INSERT INTO redemptions (redemption_id, idempotency_key, campaign_id, code,"
                " contact_id, order_ref, currency, amount, discount, total)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
                str(uuid.uuid4()),
                idempotency_key,
                coupon["campaign_id"],
                body.code,
                body.customer.contact_id,
                body.order_ref,
                body.cart.currency,
                body.cart.amount,
                discount,
                body.cart.amount - discount,
            )
            await conn.execute(
                "UPDATE coupons SET redeemed = redeemed + 1 WHERE code = $1", body.code
            )
    found = dict(first)
    response.headers["Location"] = f"/v1/redemptions/{found['redemption_id']}"
    return {k: v for k, v in found.items() if k != "idempotency_key"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
