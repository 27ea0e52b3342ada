-- Graph schema migrations: plugins and their versions, graphs and their nodes, and the
-- migration runs the migrator works through.

create table plugins (
    name             text primary key check (name ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    current_version  integer not null check (current_version >= 1),
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now()
);

-- The steps of version N turn node data of version N-1 into version N.
create table plugin_versions (
    plugin      text not null references plugins (name),
    version     integer not null check (version >= 1),
    steps       jsonb not null,
    created_at  timestamptz not null default now(),
    primary key (plugin, version)
);

create table graphs (
    id                uuid primary key,
    -- Also a subject token (`graph.{slug}.migration.…`).
    slug              text not null unique check (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    plugin            text not null references plugins (name),
    schema_version    integer not null,
    -- Set while nodes must not be written: 'migrating', or 'migration_failed' until a
    -- later run succeeds.
    read_only_reason  text,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now()
);

create table graph_nodes (
    graph_id        uuid not null references graphs (id) on delete cascade,
    id              text not null check (length(id) between 1 and 200),
    data            jsonb not null check (jsonb_typeof(data) = 'object'),
    -- The plugin version this node's data is at. A migration moves it forward only
    -- from below its target, which is what keeps any step from running twice on it.
    schema_version  integer not null,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    primary key (graph_id, id)
);

create index graph_nodes_behind on graph_nodes (graph_id, schema_version, id);

create table graph_migration_runs (
    id                uuid primary key,
    graph_id          uuid not null references graphs (id) on delete cascade,
    from_version      integer not null,
    to_version        integer not null,
    status            text not null default 'pending'
                      check (status in ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
    error             text,
    -- The job's id in the fleet: the id of the `migration.requested` event.
    workflow_run_id   text not null,
    processed         bigint not null default 0,
    total             bigint not null default 0,
    -- The lease of the migrator working on it; another may take over once it expires.
    claimed_by        text,
    claim_expires_at  timestamptz,
    -- Bumped by every claim; each batch is fenced on it.
    attempt           integer not null default 0,
    created_at        timestamptz not null default now(),
    -- When `migration.requested` was last staged; the reconciler re-announces a run
    -- left pending, or abandoned with an expired lease, from here.
    announced_at      timestamptz not null default now(),
    started_at        timestamptz,
    finished_at       timestamptz
);

-- At most one run in flight per graph: concurrent re-migrate requests create one.
create unique index graph_migration_runs_active on graph_migration_runs (graph_id)
    where status in ('pending', 'running');
create index graph_migration_runs_history on graph_migration_runs (graph_id, created_at desc, id desc);
