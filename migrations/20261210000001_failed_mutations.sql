-- `GET /mutations?status=failed` lists every topology's failed mutations, newest
-- first; they are few among many applied ones, so they get an index of their own.
create index mutations_failed on mutations (id desc) where status = 'failed';
