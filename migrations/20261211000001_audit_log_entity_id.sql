-- `GET /audit?entity=X` (no key) pages one kind of entity newest first. The index on
-- (entity, entity_key, id) orders by key before id, so that page would sort every row
-- of the kind, or walk the whole trail backwards looking for the rare kind; this one
-- reads exactly a page.
create index audit_log_entity_id on audit_log (entity, id);
