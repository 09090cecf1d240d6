"""The write side's own state in PostgreSQL, beside the event log: the code registry (one code
string, one campaign), API keys, code-batch jobs, the guessing throttle's counts, and the
schema migrations of every table (`migrate`). Read models live in `projections/`."""
