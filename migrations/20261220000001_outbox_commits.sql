-- The outbox holds one row per committed transaction, not one per event: the events a
-- transaction staged, in order, as one JSON array. The relay marks a whole commit
-- published with one row write and the reconciler trims it with one, so the outbox
-- costs a few row writes per transaction instead of three per event (insert, mark,
-- trim). Rows already in the old per-event table carry over as one-event commits.
create table outbox_commits (
    id            uuid primary key,
    -- Commit-ish order for the sweep; ids are UUIDv7 but several processes mint them.
    position      bigserial not null unique,
    -- The CloudEvents envelopes, in the order they were staged. `json`, not `jsonb`:
    -- Postgres only checks the text and stores it, and the relay reads it back as
    -- written; building jsonb would cost the database more than the rest of a commit.
    events        json not null check (json_typeof(events) = 'array'),
    -- How many events `events` holds: the relay's sweep claims commits by event count.
    event_count   integer not null check (event_count > 0),
    created_at    timestamptz not null default now(),
    published_at  timestamptz
);

-- Stored out of line without compression: a commit's events are written once, read
-- once by the relay, and compressing them costs more than the disk it saves.
alter table outbox_commits alter column events set storage external;

create index outbox_commits_unpublished on outbox_commits (position) where published_at is null;
create index outbox_commits_published on outbox_commits (published_at) where published_at is not null;

insert into outbox_commits (id, events, event_count, created_at, published_at)
select id, json_build_array(event), 1, created_at, published_at from outbox order by position;

drop table outbox;

-- One row per event, for inspection (operators, tests): what was staged, in order,
-- and whether it is published. `position` orders events across commits: the commit's
-- position × 1,000,000 + the event's place in it (a commit holds far fewer events).
create view outbox as
select (e.event->>'id')::uuid as id,
       c.position * 1000000 + e.ord as position,
       e.event->>'subject' as subject,
       e.event,
       c.created_at,
       c.published_at,
       c.id as commit_id
from outbox_commits c
cross join lateral json_array_elements(c.events) with ordinality as e(event, ord);
