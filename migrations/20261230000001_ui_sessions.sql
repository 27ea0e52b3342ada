-- Dashboard sessions (/ui/): an API token exchanged at sign-in for a cookie. The
-- cookie holds a random secret; only its SHA-256 is stored, so a read of this table
-- cannot sign anyone in. Signing out deletes the row; expired rows are refused and
-- deleted at the next sign-in.
create table ui_sessions (
    secret_sha256  bytea primary key,
    -- The token's subject and role, as an API call made from the page acts as.
    subject        text not null,
    role           text not null check (role in ('viewer', 'operator', 'admin')),
    -- Which signing secret the exchanged token was checked with (`Authenticator::key_id`):
    -- a session made under another secret is refused, so rotating `auth.secret` ends
    -- every session as it ends every token.
    key_id         text not null,
    -- Every state-changing form carries it (double submission: it is also in the page).
    csrf_token     text not null,
    created_at     timestamptz not null default now(),
    -- At most the exchanged token's own expiry.
    expires_at     timestamptz not null
);

create index ui_sessions_expires on ui_sessions (expires_at);
