-- A redemption's attribution in the contact graph looks up the contact's latest distribution
-- of the code: one index probe instead of a walk through the contact's whole history.
CREATE INDEX contact_coupons_distributed ON contact_coupons (contact_id, code, occurred_at)
    WHERE activity = 'distributed';
