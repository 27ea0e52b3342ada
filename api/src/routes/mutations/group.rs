//! Group commit: enqueue requests that arrive together are committed in one
//! transaction, and each still gets its own answer.
//!
//! ## How a group forms
//! Handlers validate their request, then hand it to the committer ([`GroupCommit`])
//! and wait for their answer. The committer takes the first request waiting and every
//! other one already queued, up to `http.group_commit_size`. If fewer came and other
//! requests are still being validated, it waits for them up to
//! `http.group_commit_wait`; a request alone in flight never waits. While one group
//! commits, the next one gathers, and up to `http.group_commit_concurrency` groups
//! commit at once (their topology locks are taken in id order, so they cannot
//! deadlock).
//!
//! ## One bad request fails alone
//! What can fail for one request is resolved per request inside the group: a topology
//! that does not exist (404), an `Idempotency-Key` already used (200 with the original,
//! or 422 for another body), the same key twice in one group (the second is a retry
//! of the first). Should the group's transaction fail anyway, for a reason other than
//! an outage, each of its requests is committed alone, so only the one at fault fails.
//! An outage answers every request of the group 503.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use switchyard_bus::{Doorbell, OutboxTx};
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;

use super::MutationOut;
use super::write::{self, Keyed, NewMutation};
use crate::error::ApiError;
use crate::metrics;
use crate::routes::topologies;
use switchyard_domain::metrics::{Outcome, Resource};

/// What an enqueue did.
#[derive(Debug)]
pub(super) enum Enqueued {
    /// A new mutation, committed and announced.
    Created(MutationOut),
    /// A retried request: the original mutation.
    Replayed(MutationOut),
}

type Answer = Result<Enqueued, ApiError>;

/// A request waiting in the queue, with where its answer goes.
struct Queued {
    mutation: NewMutation,
    answer: oneshot::Sender<Answer>,
}

/// Group-commit settings (from config section `http`).
#[derive(Clone, Copy, Debug)]
pub struct GroupCommitConfig {
    /// Most requests committed in one transaction.
    pub size: usize,
    /// Longest wait for more requests while others are still arriving.
    pub wait: Duration,
    /// Groups committing at once.
    pub concurrency: usize,
}

/// The handle handlers submit to; cheap to clone. The committer task ends when the
/// last handle is dropped, after answering everything queued.
#[derive(Clone, Debug)]
pub struct GroupCommit {
    queue: mpsc::Sender<Queued>,
    /// Requests being validated: the committer waits for them only while they exist.
    arriving: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued")
            .field("mutation", &self.mutation)
            .finish()
    }
}

/// Counts a request as arriving until it is queued (or dropped).
pub(super) struct Arriving(Arc<AtomicUsize>);

impl Drop for Arriving {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl GroupCommit {
    /// Starts the committer on the current runtime.
    pub fn start(pool: PgPool, doorbell: Doorbell, config: GroupCommitConfig) -> Self {
        let (queue, receiver) = mpsc::channel(config.size.max(1) * 4);
        let arriving = Arc::new(AtomicUsize::new(0));
        let committer = Committer {
            pool,
            doorbell,
            config,
            arriving: arriving.clone(),
        };
        tokio::spawn(committer.run(receiver));
        Self { queue, arriving }
    }

    /// Marks a request as arriving: call before validating it, so the committer knows
    /// more is coming.
    pub(super) fn arriving(&self) -> Arriving {
        self.arriving.fetch_add(1, Ordering::Relaxed);
        Arriving(self.arriving.clone())
    }

    /// Queues a validated mutation and waits for its own answer.
    pub(super) async fn submit(&self, mutation: NewMutation, arriving: Arriving) -> Answer {
        let (answer, answered) = oneshot::channel();
        let queued = Queued { mutation, answer };
        let sent = self.queue.send(queued).await;
        drop(arriving);
        sent.map_err(|_| shutting_down())?;
        answered.await.map_err(|_| shutting_down())?
    }
}

fn shutting_down() -> ApiError {
    ApiError::Unavailable("the API is shutting down; retry against another instance".to_owned())
}

/// The task that forms groups and commits them.
struct Committer {
    pool: PgPool,
    doorbell: Doorbell,
    config: GroupCommitConfig,
    arriving: Arc<AtomicUsize>,
}

impl Committer {
    async fn run(self, mut receiver: mpsc::Receiver<Queued>) {
        let this = Arc::new(self);
        let slots = Arc::new(Semaphore::new(this.config.concurrency.max(1)));
        let mut group = Vec::new();
        loop {
            let slot = slots.clone().acquire_owned().await.expect("never closed");
            if !this.gather(&mut receiver, &mut group).await {
                break;
            }
            let members = std::mem::take(&mut group);
            let committer = this.clone();
            tokio::spawn(async move {
                committer.commit(members).await;
                drop(slot);
            });
        }
        // Every handle is gone; groups still committing answer on their own.
        let _ = slots
            .acquire_many(this.config.concurrency.max(1) as u32)
            .await;
    }

    /// Fills `group`: the next request, whatever else is queued, and, while others are
    /// still arriving, what comes within `wait`. False once every handle is gone.
    async fn gather(&self, receiver: &mut mpsc::Receiver<Queued>, group: &mut Vec<Queued>) -> bool {
        let size = self.config.size.max(1);
        if receiver.recv_many(group, size).await == 0 {
            return false;
        }
        let deadline = tokio::time::Instant::now() + self.config.wait;
        while group.len() < size && self.arriving.load(Ordering::Relaxed) > 0 {
            let room = size - group.len();
            match tokio::time::timeout_at(deadline, receiver.recv_many(group, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        true
    }

    /// Commits `group` and answers each member. A member whose handler is gone (its
    /// client hung up, or `http.request_timeout` answered it) is not committed: nobody
    /// was told it was accepted.
    async fn commit(&self, group: Vec<Queued>) {
        let (mutations, answers): (Vec<NewMutation>, Vec<_>) = group
            .into_iter()
            .filter(|q| !q.answer.is_closed())
            .map(|q| (q.mutation, q.answer))
            .unzip();
        if mutations.is_empty() {
            return;
        }
        let results = match self.try_commit(&mutations).await {
            Ok(results) => results,
            // An outage: every request of the group would meet it alone too.
            Err(ApiError::Unavailable(message)) => mutations
                .iter()
                .map(|_| Err(ApiError::Unavailable(message.clone())))
                .collect(),
            Err(error) if mutations.len() > 1 => {
                tracing::warn!(%error, size = mutations.len(), "group commit failed; committing its requests one by one");
                let mut results = Vec::with_capacity(mutations.len());
                for mutation in &mutations {
                    let alone = self.try_commit(std::slice::from_ref(mutation)).await;
                    results.push(alone.and_then(|mut one| one.pop().expect("one answer")));
                }
                results
            }
            Err(error) => vec![Err(error)],
        };
        for (answer, result) in answers.into_iter().zip(results) {
            // The handler may have given up (timeout, client gone): nothing to answer.
            let _ = answer.send(result);
        }
    }

    /// One transaction for every request of the group; an answer per request.
    async fn try_commit(&self, mutations: &[NewMutation]) -> Result<Vec<Answer>, ApiError> {
        let mut tx = OutboxTx::begin(&self.pool).await?;
        let ids: Vec<Uuid> = mutations.iter().map(|m| m.topology_id).collect();
        let mut locked = write::lock_topologies(&mut tx, &ids).await?;
        let pairs: Vec<(Uuid, String)> = mutations
            .iter()
            .filter_map(|m| Some((m.topology_id, m.key.clone()?)))
            .collect();
        let stored_keys = write::find_keyed(&mut tx, &pairs).await?;
        let plan = plan(mutations, &locked, &stored_keys);
        let inserts: Vec<&NewMutation> = plan
            .iter()
            .zip(mutations)
            .filter(|(step, _)| matches!(step, Step::Insert))
            .map(|(_, m)| m)
            .collect();
        let stored = write::insert(&mut tx, &mut locked, &inserts).await?;
        tx.commit(&self.doorbell).await?;
        metrics::work(Resource::Mutation, Outcome::Enqueued, stored.len());
        Ok(answers(plan, mutations, stored, &stored_keys))
    }
}

/// What the group does with one request.
enum Step {
    Insert,
    /// Answered without writing.
    Refuse(ApiError),
    /// A retry of a stored mutation (its key was used before this group).
    Stored,
    /// A retry of the request at this index of the group (same key, earlier in it).
    SameAs(usize),
}

/// Decides each request's step, in group order.
fn plan(
    mutations: &[NewMutation],
    locked: &HashMap<Uuid, write::Locked>,
    stored_keys: &HashMap<(Uuid, String), Keyed>,
) -> Vec<Step> {
    let mut first_with_key: HashMap<(Uuid, &str), usize> = HashMap::new();
    mutations
        .iter()
        .enumerate()
        .map(|(index, m)| {
            if !locked.contains_key(&m.topology_id) {
                return Step::Refuse(topologies::not_found(m.topology_id));
            }
            let Some(key) = m.key.as_deref() else {
                return Step::Insert;
            };
            if stored_keys.contains_key(&(m.topology_id, key.to_owned())) {
                return Step::Stored;
            }
            match first_with_key.get(&(m.topology_id, key)) {
                Some(&first) => Step::SameAs(first),
                None => {
                    first_with_key.insert((m.topology_id, key), index);
                    Step::Insert
                }
            }
        })
        .collect()
}

/// Each request's answer once the group committed; `stored` holds the inserted rows in
/// group order.
fn answers(
    plan: Vec<Step>,
    mutations: &[NewMutation],
    stored: Vec<MutationOut>,
    stored_keys: &HashMap<(Uuid, String), Keyed>,
) -> Vec<Answer> {
    let mut inserted = stored.into_iter();
    let mut created: HashMap<usize, Keyed> = HashMap::new();
    let mut results = Vec::with_capacity(plan.len());
    for (index, step) in plan.into_iter().enumerate() {
        let m = &mutations[index];
        let result = match step {
            Step::Insert => {
                let row = inserted.next().expect("one stored row per insert");
                if m.key.is_some() {
                    created.insert(
                        index,
                        Keyed {
                            mutation: row.clone(),
                            request_hash: Some(m.hash.clone()),
                        },
                    );
                }
                Ok(Enqueued::Created(row))
            }
            Step::Refuse(error) => Err(error),
            Step::Stored => {
                let key = m.key.clone().expect("keyed");
                replay(&stored_keys[&(m.topology_id, key.clone())], &key, &m.hash)
            }
            Step::SameAs(first) => {
                replay(&created[&first], m.key.as_deref().expect("keyed"), &m.hash)
            }
        };
        results.push(result);
    }
    results
}

/// The original mutation for a retried request, or 422 if the key was reused for
/// another body.
pub(super) fn replay(existing: &Keyed, key: &str, hash: &[u8]) -> Answer {
    if existing.request_hash.as_deref() == Some(hash) {
        Ok(Enqueued::Replayed(existing.mutation.clone()))
    } else {
        Err(ApiError::Unprocessable(format!(
            "Idempotency-Key {key:?} was already used for mutation {} with a different body; use a new key for a new request",
            existing.mutation.id
        )))
    }
}
