-- The spine: topologies, their mutations, the audit trail, and the transactional outbox.

-- A topology is a JSON document edited only through mutations.
create table topologies (
    id          uuid primary key,
    name        text not null check (length(name) between 1 and 200),
    document    jsonb not null,
    -- Count of applied mutations; failed mutations leave it unchanged.
    version     bigint not null default 0,
    -- 'idle' when nothing is waiting, 'pending' while mutations wait to apply.
    status      text not null default 'idle' check (status in ('idle', 'pending')),
    -- Last mutation seq handed out. Incremented under the row lock by the enqueue
    -- transaction, so seqs are gapless and commit in seq order.
    last_seq    bigint not null default 0,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);

create table mutations (
    id               uuid primary key,
    topology_id      uuid not null references topologies (id) on delete cascade,
    seq              bigint not null,
    ops              jsonb not null,
    if_version       bigint,
    status           text not null default 'pending'
                     check (status in ('pending', 'applied', 'failed')),
    error            text,
    -- The topology version this mutation produced (applied only).
    applied_version  bigint,
    actor            text not null,
    idempotency_key  text,
    -- SHA-256 of the canonical request body, to tell a replay from a conflicting reuse.
    request_hash     bytea,
    created_at       timestamptz not null default now(),
    -- When the enqueued event was last staged; the reconciler re-announces from here.
    announced_at     timestamptz not null default now(),
    finished_at      timestamptz,
    unique (topology_id, seq),
    unique (topology_id, idempotency_key),
    check ((status = 'pending') = (finished_at is null))
);

-- The mutator reads the pending head of one topology; the reconciler scans stuck heads.
create index mutations_pending on mutations (topology_id, seq) where status = 'pending';

-- One row per mutation outcome. The unique key makes a second write impossible.
create table mutation_audit (
    id              bigserial primary key,
    mutation_id     uuid not null unique references mutations (id) on delete cascade,
    topology_id     uuid not null references topologies (id) on delete cascade,
    seq             bigint not null,
    outcome         text not null check (outcome in ('applied', 'failed')),
    before_version  bigint not null,
    after_version   bigint not null,
    actor           text not null,
    ops             jsonb not null,
    error           text,
    recorded_at     timestamptz not null default now()
);

create index mutation_audit_topology on mutation_audit (topology_id, id);

-- Transactional outbox: every event is staged here in the transaction that caused it,
-- then published by the relay with Nats-Msg-Id = id.
create table outbox (
    id            uuid primary key,
    -- Commit-ish order for the sweep; ids are UUIDv7 but several processes mint them.
    position      bigserial not null unique,
    -- Logical subject, without the deployment's subject prefix.
    subject       text not null,
    event         jsonb not null,
    created_at    timestamptz not null default now(),
    published_at  timestamptz
);

create index outbox_unpublished on outbox (position) where published_at is null;
create index outbox_published on outbox (published_at) where published_at is not null;
