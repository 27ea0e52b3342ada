-- The W3C trace context of the request that enqueued a mutation, so the mutator
-- applies it in the same trace however it is batched, and its `mutation.applied` or
-- `mutation.failed` event (and the reconciler's re-announcement) carries that trace.
-- Null when the request had none (a process without tracing, or rows from before).
alter table mutations
    add column traceparent text,
    add column tracestate  text;
