-- The forge metadata cache: what readers need from Gitea, kept by exactly two
-- writers (the webhook path and the reconciler's sweep), both through the forge
-- worker role. Gitea is the truth; `rfcs`, `rfc_branches`, `rfc_pulls` and
-- `forge_parse_errors` can be dropped and rebuilt from it at any time.
--
-- Repos are named `owner/name` in lower case, as Gitea compares them.

-- Each webhook delivery Gitea sent, by its X-Gitea-Delivery id: a repeated id
-- changes nothing. Trimmed after `forge.delivery_retention`.
create table forge_deliveries (
    delivery_id  text primary key,
    -- X-Gitea-Event: push, pull_request, create, delete, ...
    event        text not null,
    repo         text not null,
    received_at  timestamptz not null default now()
);

create index forge_deliveries_received on forge_deliveries (received_at);

-- Refresh bookkeeping, one row per repo ever refreshed (not part of the cache). The
-- claim serializes refreshes of one repo across the fleet: a refresh takes it (a
-- lease, fenced by `claim_generation`) before it reads Gitea and writes only while it
-- still holds it, so a read made earlier never overwrites one made later.
create table forge_repos (
    repo              text primary key,
    -- 'meta' (the meta repo) or 'rfc' (an RFC's own repo).
    role              text not null check (role in ('meta', 'rfc')),
    claimed_by        uuid,
    claim_expires_at  timestamptz,
    claim_generation  bigint not null default 0,
    -- When the claim was taken: its refresh reads Gitea after this.
    claimed_at        timestamptz,
    refreshed_at      timestamptz,
    -- When the last successful refresh took its claim: whatever Gitea said before then
    -- is in the cache, so an older `forge.changed` needs no new read.
    read_from         timestamptz,
    -- Why the last refresh failed; null once one succeeds.
    last_error        text,
    last_error_at     timestamptz
);

-- One RFC per slug, from `rfcs/*.md` on the meta repo's main branch.
create table rfcs (
    slug              text primary key,
    -- Where the entry was last read, and its blob sha there.
    path              text not null,
    blob_sha          text not null,
    title             text not null,
    state             text not null,
    -- The front matter's `id`, as written (a number or a string).
    rfc_id            text,
    -- The RFC's own repo, `owner/name`, lower case.
    repo              text,
    proposed_by       text,
    proposed_at       timestamptz,
    graduated_at      timestamptz,
    graduated_by      text,
    owners            text[] not null default '{}',
    arbiters          text[] not null default '{}',
    tags              text[] not null default '{}',
    -- The Markdown after the front matter.
    body              text not null,
    -- The entry is gone from rfcs/: the row is kept, flagged.
    missing_upstream  boolean not null default false,
    -- RFC.md on the main branch of the RFC's own repo, when read.
    document_sha      text,
    document_body     text,
    updated_at        timestamptz not null default now()
);

create index rfcs_path on rfcs (path) where not missing_upstream;
create index rfcs_repo on rfcs (repo) where repo is not null;

-- Entries of rfcs/ that could not be read as an RFC, by path.
create table forge_parse_errors (
    path      text primary key,
    blob_sha  text not null,
    error     text not null,
    seen_at   timestamptz not null default now()
);

-- Branches of RFC repos. A branch gone from Gitea keeps its row as 'deleted'.
create table rfc_branches (
    repo          text not null,
    name          text not null,
    rfc_slug      text not null,
    head_sha      text not null,
    committed_at  timestamptz,
    state         text not null check (state in ('active', 'deleted')),
    updated_at    timestamptz not null default now(),
    primary key (repo, name)
);

create index rfc_branches_slug on rfc_branches (rfc_slug, repo, name);

-- Pull requests of the meta repo (kind from the head branch) and of RFC repos
-- (kind 'rfc_branch').
create table rfc_pulls (
    repo              text not null,
    number            bigint not null,
    rfc_slug          text not null,
    kind              text not null
                      check (kind in ('idea', 'meta_body_edit', 'meta_claim', 'meta_metadata', 'rfc_branch')),
    state             text not null check (state in ('open', 'closed', 'merged')),
    title             text not null,
    head_branch       text not null,
    head_sha          text,
    -- The Gitea account that opened it.
    opener            text not null,
    -- The person behind it, and how that was decided.
    opened_by         text not null,
    opened_by_source  text not null
                      check (opened_by_source in ('opener', 'actions_log', 'trailer', 'login')),
    created_at        timestamptz not null,
    closed_at         timestamptz,
    merged_at         timestamptz,
    updated_at        timestamptz not null default now(),
    primary key (repo, number)
);

create index rfc_pulls_slug on rfc_pulls (rfc_slug, repo, number);

-- switchyard's own actions that opened a pull request through the bot account: who
-- asked for it. Not part of the cache (Gitea does not know it), so a rebuild keeps it.
create table forge_actions (
    repo         text not null,
    pr_number    bigint not null,
    rfc_slug     text not null,
    actor        text not null,
    action       text not null,
    recorded_at  timestamptz not null default now(),
    primary key (repo, pr_number)
);

create index forge_actions_slug on forge_actions (rfc_slug, pr_number);

-- Each sweep of the forge cache and what it found: the reconciler's scheduled ones,
-- and those asked for (`POST /forge/reconcile`, `POST /forge/rebuild`, the CLI).
create table forge_sweeps (
    id            uuid primary key,
    -- 'schedule', 'request' or 'rebuild' (the cache is dropped first).
    trigger       text not null check (trigger in ('schedule', 'request', 'rebuild')),
    -- Who asked: the token's subject, or the part of switchyard that decided.
    requested_by  text not null,
    requested_at  timestamptz not null default now(),
    -- The forge process running it (its claim); null while a requested sweep waits.
    claimed_by    uuid,
    started_at    timestamptz,
    -- Renewed as the sweep goes; a sweep whose heartbeat is older than
    -- `forge.claim_ttl` was abandoned (its process died) and is taken over.
    heartbeat_at  timestamptz,
    finished_at   timestamptz,
    repos         integer not null default 0,
    changes       integer not null default 0,
    gitea_calls   integer not null default 0,
    -- [{"repo": "owner/name", "error": "..."}] for each repo that stayed unreachable.
    unreachable   jsonb not null default '[]'
);

create index forge_sweeps_requested on forge_sweeps (requested_at desc);
