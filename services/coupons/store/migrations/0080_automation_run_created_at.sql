-- When a run's row was written (the contacts processor's, the timer loop's or a broadcast's
-- transaction), to the millisecond: `triggered_at` is the trigger's second. Rows written
-- before this migration have none. The trigger-latency benchmark splits event -> run
-- recorded -> claimed with it (docs/performance/automations.md).
ALTER TABLE automation_runs ADD COLUMN created_at timestamptz;
ALTER TABLE automation_runs ALTER COLUMN created_at SET DEFAULT now();
