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

update repos set remote_url = pg_temp.without_credentials(remote_url)
where remote_url is distinct from pg_temp.without_credentials(remote_url);

update audit_log
set detail = jsonb_set(detail, '{remote_url}',
                       to_jsonb(pg_temp.without_credentials(detail->>'remote_url')))
where entity = 'repo' and jsonb_typeof(detail->'remote_url') = 'string'
  and detail->>'remote_url' <> pg_temp.without_credentials(detail->>'remote_url');
