//! The mutator's messages, handled a pulled batch at a time.
//!
//! Every `mutation.enqueued` message pulled and not yet handled arrives in one call:
//! 1. A message whose mutation this process already saw finish (its topology's
//!    finished seq, remembered in [`FinishedSeqs`], is at or past the message's seq)
//!    is acked without a database round trip: a duplicate, a redelivery, or a message
//!    a batch overtook.
//! 2. The topologies of the rest are drained together, in transactions across
//!    topologies ([`super::across`]), up to `max_batches_per_message` rounds.
//! 3. A topology another transaction holds is drained alone, waiting for its lock
//!    ([`Mutator::try_handle`]), as is every topology of a round that failed with an
//!    error other than an outage (the single path isolates the mutation at fault).
//! 4. A message is acked once its mutation is finished; one still pending when the
//!    rounds run out is retried shortly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use switchyard_bus::Event;
use switchyard_bus::payloads::MutationEnqueued;
use uuid::Uuid;

use super::across::{self, Across};
use super::{BatchLimits, Mutator};
use crate::consumer::{Outcome, outcome_of, retry_delay};

/// The highest finished seq of each topology this process drained, so a message for
/// a finished mutation is acked without asking Postgres. Shared by clones; forgets
/// everything past [`FinishedSeqs::CAPACITY`] topologies (a forgotten topology only
/// costs one query again).
#[derive(Clone, Debug, Default)]
pub struct FinishedSeqs(Arc<Mutex<HashMap<Uuid, i64>>>);

impl FinishedSeqs {
    const CAPACITY: usize = 100_000;

    /// Whether the mutation at `seq` of `topology_id` is known to be finished.
    fn finished(&self, topology_id: Uuid, seq: i64) -> bool {
        let seqs = self.0.lock().expect("never poisoned");
        seqs.get(&topology_id)
            .is_some_and(|through| *through >= seq)
    }

    /// Records that every mutation of `topology_id` up to `through` is finished.
    fn record(&self, topology_id: Uuid, through: i64) {
        let mut seqs = self.0.lock().expect("never poisoned");
        if seqs.len() >= Self::CAPACITY && !seqs.contains_key(&topology_id) {
            seqs.clear();
        }
        let known = seqs.entry(topology_id).or_insert(through);
        *known = (*known).max(through);
    }
}

/// One message waiting for its mutation to finish.
struct Waiting {
    /// Its place in the batch.
    index: usize,
    enqueued: MutationEnqueued,
    delivered: i64,
}

impl Mutator {
    /// Handles a pulled batch of `mutation.enqueued` events (see the module docs).
    pub(super) async fn handle_all(&self, events: &[(Event, i64)]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = events.iter().map(|_| None).collect();
        let mut waiting: HashMap<Uuid, Vec<Waiting>> = HashMap::new();
        for (index, (event, delivered)) in events.iter().enumerate() {
            let Ok(enqueued) = serde_json::from_value::<MutationEnqueued>(event.data.clone())
            else {
                outcomes[index] = Some(Outcome::Reject(format!(
                    "event {} has no mutation_id/topology_id",
                    event.id
                )));
                continue;
            };
            // A re-announcement means Postgres still says pending: always ask it.
            if !enqueued.reannounced && self.finished.finished(enqueued.topology_id, enqueued.seq) {
                outcomes[index] = Some(Outcome::Ack);
                continue;
            }
            let topology = waiting.entry(enqueued.topology_id).or_default();
            topology.push(Waiting {
                index,
                enqueued,
                delivered: *delivered,
            });
        }
        for _ in 0..self.config.max_batches_per_message {
            if waiting.is_empty() {
                break;
            }
            self.round(events, &mut waiting, &mut outcomes).await;
        }
        for message in waiting.into_values().flatten() {
            outcomes[message.index] = Some(Outcome::Retry(self.config.busy_retry_delay));
        }
        outcomes
            .into_iter()
            .map(|o| o.expect("every message settled"))
            .collect()
    }

    /// One transaction across the waiting topologies; settles what it finished.
    async fn round(
        &self,
        events: &[(Event, i64)],
        waiting: &mut HashMap<Uuid, Vec<Waiting>>,
        outcomes: &mut [Option<Outcome>],
    ) {
        // The rest wait for the next round.
        let topologies: Vec<Uuid> = waiting
            .keys()
            .take(across::MAX_TOPOLOGIES)
            .copied()
            .collect();
        let limits = BatchLimits {
            size: self.config.batch_size,
            document: self.limits,
            lock_timeout: self.config.lock_timeout,
        };
        match across::run(&self.pool, &self.doorbell, &topologies, limits).await {
            Ok(across) => {
                self.settle_drained(&across, waiting, outcomes);
                self.alone(events, &across.held, waiting, outcomes).await;
            }
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, "batch across topologies failed; will retry");
                for message in std::mem::take(waiting).into_values().flatten() {
                    let delay = retry_delay(self.config.max_retry_delay, message.delivered);
                    outcomes[message.index] = Some(Outcome::Retry(delay));
                }
            }
            Err(error) => {
                tracing::warn!(%error, "batch across topologies failed; draining each topology alone");
                self.alone(events, &topologies, waiting, outcomes).await;
            }
        }
    }

    /// Acks the messages whose mutations `across` finished, and remembers its seqs.
    fn settle_drained(
        &self,
        across: &Across,
        waiting: &mut HashMap<Uuid, Vec<Waiting>>,
        outcomes: &mut [Option<Outcome>],
    ) {
        for (topology_id, drained) in &across.drained {
            if let Some(through) = drained.through {
                self.finished.record(*topology_id, through);
            }
            let Some(messages) = waiting.get_mut(topology_id) else {
                continue;
            };
            messages.retain(|message| {
                // Nothing left pending: every mutation of the topology is finished.
                let done = !drained.more || drained.through >= Some(message.enqueued.seq);
                if done {
                    outcomes[message.index] = Some(Outcome::Ack);
                }
                !done
            });
            if messages.is_empty() {
                waiting.remove(topology_id);
            }
        }
    }

    /// Drains each of `topologies` alone, waiting for its lock, one message at a time
    /// (the topologies concurrently), and settles their messages.
    async fn alone(
        &self,
        events: &[(Event, i64)],
        topologies: &[Uuid],
        waiting: &mut HashMap<Uuid, Vec<Waiting>>,
        outcomes: &mut [Option<Outcome>],
    ) {
        let groups: Vec<Vec<Waiting>> = topologies
            .iter()
            .filter_map(|id| waiting.remove(id))
            .collect();
        let settled = futures::future::join_all(groups.into_iter().map(|messages| async move {
            let mut settled = Vec::with_capacity(messages.len());
            for message in messages {
                let result = self.try_handle(&message.enqueued).await;
                let event = &events[message.index].0;
                let outcome = outcome_of(
                    result,
                    self.config.max_retry_delay,
                    event,
                    message.delivered,
                );
                settled.push((message.index, outcome));
            }
            settled
        }))
        .await;
        for (index, outcome) in settled.into_iter().flatten() {
            outcomes[index] = Some(outcome);
        }
    }
}
