-- Guessing failures at checkout (unknown code, someone else's code), counted per subject
-- (a digest of the contact, the shopper's address or the API key) and fixed window, shared
-- by every replica (services/coupons/api/throttle.py). Unlogged: the counts live for two
-- windows, and losing them in a crash only forgives recent failures.
CREATE UNLOGGED TABLE checkout_failures (
    subject   text    COLLATE "C" NOT NULL,
    window_no bigint  NOT NULL,  -- floor(epoch seconds / window length)
    failures  integer NOT NULL,
    PRIMARY KEY (subject, window_no)
);
CREATE INDEX checkout_failures_by_window ON checkout_failures (window_no);
