"""The single-writer engine: one writer per partition of an aggregate's command topic decides
its commands in order and appends the events in Kafka transactions. Generic over the
aggregate (`aggregate.Aggregate`); the campaign plugs in through `services/coupons/decider.py`.

* `aggregate`: what an aggregate provides (its codecs, pure decide/evolve, refusals,
  announcements);
* `batch`: deciding a batch of commands against a partition's state, in memory (pure: the
  memo, dead letters, unprocessable commands);
* `transactions`: a partition's transactional producers and the commit of a batch;
* `replies`: answering each command (in memory, through a local socket, or the topic);
* `kafka_private`: the one place that reaches into aiokafka's internals;
* `engine`: consuming, partition ownership and fencing, folding state, the run loop.
"""
