"""Public contracts of the coupon engine: commands, events, their envelope and topics.

Every message on a topic is an `Envelope` whose `data` is one frozen, versioned model.
Stored events never depend on Python module paths: they are found by their literal type
name (`coupon.campaign_defined.v1`), and old versions are upcast on read (`upcasting`).
"""
