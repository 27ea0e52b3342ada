-- A graph's state, with a way out of a failed migration, and cancellable runs.

-- 'ready'; 'migrating' while a run works the graph (node writes are refused); or
-- 'migration_failed' after a run failed: node writes are allowed so the data can be
-- repaired, and re-migrating or cancelling the failed run leaves it.
alter table graphs add column status text not null default 'ready'
    check (status in ('ready', 'migrating', 'migration_failed'));
update graphs set status = read_only_reason where read_only_reason is not null;
alter table graphs drop column read_only_reason;

-- When an operator asked a running run to stop; its migrator ends it as 'cancelled'
-- at the next batch boundary.
alter table graph_migration_runs add column cancel_requested_at timestamptz;
