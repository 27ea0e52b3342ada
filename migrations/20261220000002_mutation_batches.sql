-- Bulk enqueue (`POST /mutations/batch`): a retried batch with the same
-- Idempotency-Key answers with the mutations the first one created.
create table mutation_batches (
    idempotency_key  text primary key check (length(idempotency_key) between 1 and 255),
    -- SHA-256 of the canonical request body, to tell a replay from a conflicting reuse.
    request_hash     bytea not null,
    -- The mutations it created, in request order.
    mutation_ids     uuid[] not null,
    actor            text not null,
    created_at       timestamptz not null default now()
);
