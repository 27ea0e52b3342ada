//! The forge role: keeps the forge metadata cache (RFCs, their branches and pull
//! requests) as Gitea has them. Gitea is the truth; the cache can be dropped and
//! rebuilt from it at any time ([`Forge::rebuild`]).
//!
//! ## Two writers, one truth
//! The cache has exactly two writers, both here, and both *read Gitea* and then write:
//! - the **webhook path**: the API verifies a delivery and stages
//!   `forge.{owner}.{repo}.changed`; this role consumes it ([`Forge::refresh`]);
//! - the **sweep** ([`Forge::sweep`], run at start-up and every
//!   `forge.reconcile_interval` by one process of the fleet, or when asked for through
//!   `forge.sweep.requested`), which catches every missed webhook.
//!
//! Refreshes of one repo are serialized fleet-wide by its claim (`forge_repos`, see
//! [`claim`]): a refresh takes the claim *before* it reads Gitea and writes only while
//! it still holds it, so a read made earlier never overwrites one made later. A
//! refresh that finds the claim held is retried after the holder is done (it reads
//! then, so nothing it was told about is missed).
//!
//! ## What is read
//! - The meta repo (`forge.meta_repo`): `rfcs/*.md` on the main branch, each parsed
//!   ([`entry`]) into one cached RFC per slug (an entry whose blob sha is unchanged is
//!   not fetched again); its pull requests, with kind and slug from the head branch.
//! - Each active RFC's own repo: `RFC.md`, its branches and its pull requests.
//!
//! ## Where the data goes next
//! Every cache change commits with its audit row and an event (`rfc.{slug}.updated`,
//! `rfc.{slug}.branch.*`, `rfc.{slug}.pull.*`), which the relay publishes.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use switchyard_bus::payloads::{ForgeChanged, ForgeSweep};
use switchyard_bus::{Doorbell, Event, EventType, Source};
use tracing::Instrument;
use uuid::Uuid;

use crate::WorkerError;
use crate::consumer::{EventHandler, Outcome};

pub mod cache;
pub mod claim;
pub mod entry;
pub mod gitea;
mod refresh;
pub mod sweep;

pub use gitea::{Gitea, GiteaError, GiteaSettings};
pub use sweep::SweepReport;
pub use switchyard_domain::forge::{INACTIVE_STATES, RepoName};

const SOURCE: Source = Source::Forge;

/// How much later than a `forge.changed` event a refresh must have begun reading for
/// the event to need no read of its own (clocks of the API and Postgres may differ).
const READ_MARGIN: Duration = Duration::from_secs(5);

/// Forge settings (config section `forge`). The role runs only when `url` and
/// `meta_repo` are set.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForgeConfig {
    /// Gitea's base URL, e.g. `https://gitea.example.com`.
    pub url: Option<String>,
    /// A Gitea access token with read access to the meta repo and the RFC repos.
    pub token: Option<String>,
    /// The secret shared with Gitea's webhooks (`X-Gitea-Signature`); read by the API.
    pub webhook_secret: Option<String>,
    /// The meta repo, `owner/name`: one entry per RFC under `rfcs/`.
    pub meta_repo: Option<String>,
    /// The branch read in the meta repo and in RFC repos.
    pub main_branch: String,
    /// The Gitea account switchyard's own actions open pull requests with.
    pub bot_user: Option<String>,
    /// Time between sweeps (one process of the fleet sweeps).
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// Timeout of each Gitea request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Retries of a Gitea request that timed out or got a 5xx or 429.
    pub retries: usize,
    /// Upper bound of the delay between those retries (exponential from 200 ms).
    #[serde(with = "humantime_serde")]
    pub max_retry_delay: Duration,
    /// How long a refresh may hold a repo's claim before another may take it over.
    #[serde(with = "humantime_serde")]
    pub claim_ttl: Duration,
    /// Items per page asked of Gitea (its default cap is 50).
    pub page_limit: usize,
    /// Entries fetched at once while reading the meta repo, and repos refreshed at
    /// once by a sweep.
    pub read_concurrency: usize,
    /// Entries larger than this (bytes) are reported as parse errors, not read; an
    /// RFC repo's `RFC.md` larger than this is not cached. Gitea's answers are read up
    /// to twice this plus 4 MiB.
    pub max_entry_bytes: u64,
    /// How long webhook delivery ids are kept to recognise a repeated delivery.
    #[serde(with = "humantime_serde")]
    pub delivery_retention: Duration,
    /// Refreshes handled at once by one process.
    pub concurrency: usize,
    /// Deliveries of one `forge.changed` event before a refresh that keeps failing
    /// (Gitea down, the repo's claim held) is left to the next sweep.
    pub max_attempts: u32,
    /// Unacked messages the shared consumer hands out across the fleet.
    pub max_ack_pending: i64,
}

impl Default for ForgeConfig {
    fn default() -> Self {
        Self {
            url: None,
            token: None,
            webhook_secret: None,
            meta_repo: None,
            main_branch: "main".to_owned(),
            bot_user: None,
            reconcile_interval: Duration::from_secs(300),
            request_timeout: Duration::from_secs(10),
            retries: 4,
            max_retry_delay: Duration::from_secs(5),
            claim_ttl: Duration::from_secs(300),
            page_limit: 50,
            read_concurrency: 8,
            max_entry_bytes: 1024 * 1024,
            delivery_retention: Duration::from_secs(30 * 24 * 3600),
            concurrency: 4,
            max_attempts: 20,
            max_ack_pending: 1000,
        }
    }
}

impl ForgeConfig {
    /// The Gitea client settings, when `url` is set.
    pub fn gitea(&self) -> Option<GiteaSettings> {
        Some(GiteaSettings {
            url: self.url.clone()?,
            token: self.token.clone(),
            timeout: self.request_timeout,
            retries: self.retries,
            max_retry_delay: self.max_retry_delay,
            page_limit: self.page_limit,
            // A file's base64 (4/3 of it) in its JSON, with room for a page of a list.
            max_response_bytes: (self.max_entry_bytes as usize)
                .saturating_mul(2)
                .saturating_add(4 * 1024 * 1024),
        })
    }
}

/// The forge role: cheap to clone, safe to run in many processes.
#[derive(Clone, Debug)]
pub struct Forge {
    /// Where the cache, the claims and the sweeps are.
    pub pool: PgPool,
    /// Rung with each committed change's events.
    pub doorbell: Doorbell,
    /// The `forge` config section.
    pub config: ForgeConfig,
    /// How Gitea is read (`forge.url`, `forge.token`).
    pub gitea: Gitea,
    /// The meta repo (`forge.meta_repo`).
    pub meta: RepoName,
    /// This process's claim holder id.
    pub holder: Uuid,
}

/// Why a forge role cannot be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum ForgeSetupError {
    #[error("forge.url is not set: the forge role needs Gitea's base URL")]
    NoUrl,
    #[error("forge.meta_repo is not set: the forge role needs the meta repo (owner/name)")]
    NoMetaRepo,
    #[error("forge.meta_repo {0:?} is not owner/name")]
    BadMetaRepo(String),
    #[error(transparent)]
    Gitea(#[from] GiteaError),
}

impl Forge {
    /// A forge role for `config`.
    pub fn new(
        pool: PgPool,
        doorbell: Doorbell,
        config: ForgeConfig,
    ) -> Result<Self, ForgeSetupError> {
        let settings = config.gitea().ok_or(ForgeSetupError::NoUrl)?;
        let meta_text = config
            .meta_repo
            .as_deref()
            .ok_or(ForgeSetupError::NoMetaRepo)?;
        let meta = RepoName::parse(meta_text)
            .ok_or_else(|| ForgeSetupError::BadMetaRepo(meta_text.to_owned()))?;
        Ok(Self {
            pool,
            doorbell,
            gitea: Gitea::new(settings)?,
            config,
            meta,
            holder: Uuid::now_v7(),
        })
    }
}

impl Forge {
    /// Takes the sweep a `forge.sweep.requested` event names and runs it in a task of
    /// its own, so a long sweep neither outlives the ack wait nor holds a slot of the
    /// pull loop. Taken elsewhere, or finished: nothing to do. A run that dies is
    /// resumed by the sweep loop once its heartbeat is stale.
    async fn handle_sweep_request(&self, event: &Event) -> Result<Outcome, WorkerError> {
        let Ok(request) = serde_json::from_value::<ForgeSweep>(event.data.clone()) else {
            return Ok(Outcome::Reject(format!(
                "event {} is not a forge sweep",
                event.id
            )));
        };
        let id = request.sweep_id;
        let Some(trigger) = self.take_requested(id).await? else {
            tracing::debug!(sweep = %id, "forge sweep taken elsewhere or done");
            return Ok(Outcome::Ack);
        };
        let forge = self.clone();
        // In the request's trace: a child of this event's span, outliving it.
        let span = tracing::info_span!("forge.sweep", sweep.id = %id);
        let sweep = async move {
            match forge.run_taken(id, trigger).await {
                Ok(report) => tracing::info!(?report, "requested forge sweep done"),
                Err(error) => {
                    tracing::warn!(%error, sweep = %id, "requested forge sweep failed; it is resumed later");
                }
            }
        };
        tokio::spawn(sweep.instrument(span));
        Ok(Outcome::Ack)
    }
}

impl EventHandler for Forge {
    fn max_retry_delay(&self) -> Duration {
        self.config.max_retry_delay.max(Duration::from_secs(1))
    }

    /// Refreshes the repo the event names. A repo the cache does not track is acked
    /// untouched; a held claim or an unreachable Gitea is retried; anything else is
    /// recorded on the repo (`forge_repos.last_error`) and acked.
    async fn handle_event(&self, event: &Event, delivered: i64) -> Result<Outcome, WorkerError> {
        if event.kind == EventType::ForgeSweepRequested.as_str() {
            return self.handle_sweep_request(event).await;
        }
        let Ok(changed) = serde_json::from_value::<ForgeChanged>(event.data.clone()) else {
            return Ok(Outcome::Reject(format!(
                "event {} is not forge.changed",
                event.id
            )));
        };
        let repo = RepoName {
            owner: changed.owner.to_lowercase(),
            name: changed.name.to_lowercase(),
        };
        // A refresh that began reading well after this was sent has seen it: a burst of
        // webhooks (or a backlog after an outage) costs one read, not one each.
        let margin = chrono::Duration::from_std(READ_MARGIN).expect("a small duration");
        if claim::read_from(&self.pool, &repo)
            .await?
            .is_some_and(|from| from > event.time + margin)
        {
            return Ok(Outcome::Ack);
        }
        match self.refresh(&repo).await {
            Ok(refreshed) => {
                tracing::debug!(%repo, ?refreshed, trigger = ?changed.trigger, "forge repo refreshed");
                Ok(Outcome::Ack)
            }
            Err(error)
                if error.is_transient() && delivered >= i64::from(self.config.max_attempts) =>
            {
                tracing::warn!(%error, %repo, delivered, "forge refresh still failing; left to the next sweep");
                Ok(Outcome::Ack)
            }
            Err(error) if error.is_transient() => Err(error),
            Err(error) => {
                tracing::warn!(%error, %repo, "forge refresh failed for good; recorded on the repo");
                Ok(Outcome::Ack)
            }
        }
    }
}
