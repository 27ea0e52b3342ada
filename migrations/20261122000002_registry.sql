-- The interface change registry: repos, the changes they announce, the inbox messages
-- and progress events the notifier writes, and the audit trail of every state change.

create table repos (
    -- Also a subject token (`repo.{slug}.inbox`), hence the narrow alphabet.
    slug             text primary key check (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name             text not null check (length(name) between 1 and 200),
    domain           text,
    remote_url       text,
    -- `remote_url` normalized (no scheme, user, `.git` or trailing slash; lowercase
    -- host) so `git@host:o/r.git` and `https://host/o/r` find the same repo.
    remote_key       text,
    git_fingerprint  text,
    description      text,
    archived_at      timestamptz,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now()
);

create index repos_domain on repos (domain, slug);
-- One active repo per remote; archived ones keep theirs for history.
create unique index repos_remote_key on repos (remote_key) where archived_at is null;
create index repos_fingerprint on repos (git_fingerprint);

create table interface_changes (
    id                   uuid primary key,
    repo_slug            text not null references repos (slug),
    interface_type       text not null
                         check (interface_type in ('rest_api', 'mcp_tool', 'cli', 'schema', 'capability')),
    change_type          text not null
                         check (change_type in ('breaking', 'additive', 'deprecation', 'removal')),
    title                text not null check (length(title) between 1 and 200),
    description          text not null,
    affected_paths       text[] not null,
    affected_repo_slugs  text[] not null,
    planned_for          date,
    author               text not null,
    status               text not null default 'draft'
                         check (status in ('draft', 'published', 'resolved')),
    created_at           timestamptz not null default now(),
    updated_at           timestamptz not null default now(),
    published_at         timestamptz,
    resolved_at          timestamptz,
    -- When `interface.{id}.published` was last staged; the reconciler re-announces a
    -- published change the notifier has not handled from here.
    announced_at         timestamptz,
    check ((status = 'draft') = (published_at is null)),
    check ((status = 'resolved') = (resolved_at is not null))
);

create index interface_changes_repo on interface_changes (repo_slug, created_at desc);
create index interface_changes_affected on interface_changes using gin (affected_repo_slugs);
create index interface_changes_published on interface_changes (published_at desc)
    where status = 'published';

create table inbox_messages (
    id                   uuid primary key,
    repo_slug            text not null references repos (slug),
    from_repo_slug       text not null references repos (slug),
    interface_change_id  uuid not null references interface_changes (id),
    subject              text not null,
    body                 text not null,
    created_at           timestamptz not null default now(),
    read_at              timestamptz,
    -- One message per change and recipient, however often the notifier runs.
    unique (interface_change_id, repo_slug)
);

create index inbox_messages_repo on inbox_messages (repo_slug, created_at desc);
create index inbox_messages_unread on inbox_messages (repo_slug) where read_at is null;

create table progress_events (
    id                   uuid primary key,
    repo_slug            text not null references repos (slug),
    kind                 text not null check (kind in ('milestone')),
    summary              text not null,
    detail               jsonb not null,
    interface_change_id  uuid references interface_changes (id),
    created_at           timestamptz not null default now(),
    -- One notification milestone per change, however often the notifier runs.
    unique (interface_change_id, kind)
);

create index progress_events_repo on progress_events (repo_slug, created_at desc);

-- Who changed what, written in the transaction of the change.
create table audit_log (
    id           bigserial primary key,
    -- 'repo', 'interface_change', 'inbox_message', 'plugin' or 'graph'.
    entity       text not null,
    entity_key   text not null,
    action       text not null,
    actor        text not null,
    detail       jsonb not null default '{}',
    recorded_at  timestamptz not null default now()
);

create index audit_log_entity on audit_log (entity, entity_key, id);
