-- No credentials in stored remote URLs.
--
-- Remote URLs are shown to every reader; they were once stored with whatever
-- credentials they carried. Keep the remote, drop the secret: an HTTP user or token,
-- any password, a query string or fragment.
create function pg_temp.without_credentials(url text) returns text
language sql immutable as $$
    select case
        when url ~* '^(https?|ftps?)://' then
            regexp_replace(regexp_replace(url, '^([^:]+://)[^/?#]*@', '\1'), '[?#].*$', '')
        when url ~ '^[A-Za-z][A-Za-z0-9+.-]*://' then
            regexp_replace(regexp_replace(url, '^([^:]+://)[^/?#@]*:[^/?#]*@', '\1'), '[?#].*$', '')
        -- scp-like `user:password@host:path`
        when url ~ '^[^/:@]+:[^/@]*@' then regexp_replace(url, '^[^/:@]+:[^/@]*@', '')
        else url
    end
$$;

-- The comparable key, as the API computes it (api/src/routes/repos/remote.rs): an old
-- key kept a query string, secret and all.
create function pg_temp.remote_key(url text) returns text language sql immutable as $$
    select lower(regexp_replace(authority, '^.*@', '')) || '/'
           || regexp_replace(regexp_replace(path, '^/+|/+$', '', 'g'), '\.git$', '')
    from (
        select case when url ~ '^[^/:]+://' then substring(url from '^[^/:]+://([^/?#]*)')
                    else substring(url from '^([^:]*):') end as authority,
               case when url ~ '^[^/:]+://' then substring(url from '^[^/:]+://[^/?#]*(.*)$')
                    else substring(url from '^[^:]*:(.*)$') end as path
    ) parts
$$;

-- A cleaned remote that another active repo already has keeps no key: it is not
-- found by remote until an operator edits one of the two.
update repos r
set remote_url = pg_temp.without_credentials(r.remote_url),
    remote_key = case
        when r.archived_at is null and exists (
            select 1 from repos o
            where o.slug <> r.slug and o.archived_at is null
              and o.remote_key = pg_temp.remote_key(pg_temp.without_credentials(r.remote_url)))
        then null
        else pg_temp.remote_key(pg_temp.without_credentials(r.remote_url))
    end
where r.remote_url is distinct from pg_temp.without_credentials(r.remote_url);

update audit_log
set detail = jsonb_set(detail, '{remote_url}',
                       to_jsonb(pg_temp.without_credentials(detail->>'remote_url')))
where entity = 'repo' and jsonb_typeof(detail->'remote_url') = 'string'
  and detail->>'remote_url' <> pg_temp.without_credentials(detail->>'remote_url');
