//! One refresh of one repo: take its claim, read Gitea, then in one transaction check
//! the claim is still held, compare with the cache, write what changed (with audit
//! rows and events) and release the claim.

use std::collections::{BTreeMap, HashMap, HashSet};

use backon::{ExponentialBuilder, Retryable};
use futures::{StreamExt, TryStreamExt};
use switchyard_bus::payloads::{ForgeChanged, ForgeTrigger};
use switchyard_bus::{Event, OutboxTx, Payload};
use switchyard_domain::status::{BranchState, ForgeRepoRole, PullKind, PullState};

use super::cache::{self, BranchRow, PullRow};
use super::claim::{self, Claim};
use super::entry::{self, Entry};
use super::gitea::{self, DirEntry, Gitea};
use super::{Forge, RepoName, SOURCE};
use crate::WorkerError;

/// Where the RFC entries live in the meta repo.
pub(super) const ENTRIES_DIR: &str = "rfcs";
/// An RFC repo's document.
const DOCUMENT: &str = "RFC.md";

/// What a refresh did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refreshed {
    /// Cache rows changed (each with its audit row and event).
    pub changes: usize,
    /// Whether the repo is one the cache tracks (the meta repo or an active RFC's).
    pub tracked: bool,
}

/// An entry of `rfcs/` after reading: its parsed RFC, or why it does not parse.
type Read = Result<Entry, String>;

/// Why an entry is too large to read starts so; such an error is decided again on
/// each refresh (the limit may have been raised), never kept by blob sha.
const TOO_LARGE: &str = "entry is ";

/// What the meta repo holds now.
struct MetaRead {
    /// `rfcs/*.md` files by path: blob sha, and the entry when it was (re)read this
    /// time (`None`: unchanged since cached, or unreadable this time).
    files: BTreeMap<String, (String, Option<Read>)>,
    pulls: Vec<gitea::Pull>,
}

/// What an RFC repo holds now.
struct RfcRead {
    document: Option<gitea::File>,
    branches: Vec<gitea::Branch>,
    /// Whether `branches` is every branch (no page shifted while it was listed).
    branches_complete: bool,
    pulls: Vec<gitea::Pull>,
}

impl Forge {
    /// Refreshes `repo` from Gitea with this role's client.
    pub async fn refresh(&self, repo: &RepoName) -> Result<Refreshed, WorkerError> {
        self.refresh_with(&self.gitea, repo).await
    }

    /// Refreshes `repo` reading through `gitea`: the meta repo or an active RFC's repo;
    /// any other repo is left alone. Another refresh holding the claim is
    /// [`WorkerError::Fenced`] (retry); a Gitea failure is recorded on the repo.
    pub async fn refresh_with(
        &self,
        gitea: &Gitea,
        repo: &RepoName,
    ) -> Result<Refreshed, WorkerError> {
        let role = if *repo == self.meta {
            ForgeRepoRole::Meta
        } else {
            let mut conn = self.pool.acquire().await?;
            if cache::rfc_of_repo(&mut conn, repo).await?.is_none() {
                return Ok(Refreshed::default());
            }
            ForgeRepoRole::Rfc
        };
        let ttl = self.config.claim_ttl;
        let Some(claim) = claim::take(&self.pool, repo, role, self.holder, ttl).await? else {
            return Err(WorkerError::Fenced(format!("{repo} is being refreshed")));
        };
        let result = match role {
            ForgeRepoRole::Meta => self.refresh_meta(gitea, claim).await,
            ForgeRepoRole::Rfc => self.refresh_rfc(gitea, repo, claim).await,
        };
        if let Err(error) = &result
            && !matches!(error, WorkerError::Fenced(_))
        {
            // Best effort: with Postgres down the lease simply expires (`claim_ttl`).
            let why = error.to_string();
            let release = || claim::release_failed(&self.pool, repo, claim, &why);
            let released = release
                .retry(ExponentialBuilder::default().with_max_times(3))
                .await;
            if let Err(release_error) = released {
                tracing::warn!(%release_error, %repo, "could not release the repo's claim; it expires");
            }
        }
        result.map(|changes| Refreshed {
            changes,
            tracked: true,
        })
    }

    async fn refresh_meta(&self, gitea: &Gitea, claim: Claim) -> Result<usize, WorkerError> {
        let read = self.read_meta(gitea).await?;
        let mut tx = OutboxTx::begin(&self.pool).await?;
        if !claim::hold(&mut tx, &self.meta, claim).await? {
            return Err(WorkerError::Fenced(format!("{} was taken over", self.meta)));
        }
        let mut events = self.write_entries(&mut tx, read.files).await?;
        let cached = cache::pulls(&mut tx, &self.meta).await?;
        let logged = cache::logged_actors(&mut tx, &self.meta).await?;
        let pulls = read.pulls.iter().filter_map(|pull| {
            let (kind, slug) = entry::meta_pull_kind(&pull.head.name)?;
            Some(self.pull_row(pull, kind, slug, &logged))
        });
        events.extend(write_pulls(&mut tx, &self.meta, pulls, &cached).await?);
        let changes = events.len();
        events.extend(self.announce_new_repos(&mut tx).await?);
        claim::release(&mut tx, &self.meta, claim).await?;
        tx.stage(&events);
        tx.commit(&self.doorbell).await?;
        Ok(changes)
    }

    /// Lists `rfcs/` and reads every `.md` entry the cache does not hold at its
    /// current blob sha (as an RFC or as a parse error).
    async fn read_meta(&self, gitea: &Gitea) -> Result<MetaRead, WorkerError> {
        let branch = &self.config.main_branch;
        let listing = gitea.list_dir(&self.meta, ENTRIES_DIR, branch).await?;
        let (known, errors) = {
            let mut conn = self.pool.acquire().await?;
            (
                cache::live_entries(&mut conn).await?,
                cache::parse_errors(&mut conn).await?,
            )
        };
        let entries: Vec<DirEntry> = listing
            .into_iter()
            .filter(|e| e.kind == "file" && e.name.ends_with(".md"))
            .collect();
        let reads: Vec<_> = entries
            .iter()
            .filter(|e| {
                let key = (e.path.clone(), e.sha.clone());
                let kept_error = errors
                    .get(&key)
                    .is_some_and(|why| !why.starts_with(TOO_LARGE));
                !known.contains_key(&key) && !kept_error
            })
            .map(|e| self.read_entry(gitea, e.clone()))
            .collect();
        let fetched: HashMap<String, (String, Option<Read>)> = futures::stream::iter(reads)
            .buffer_unordered(self.config.read_concurrency.max(1))
            .try_collect()
            .await?;
        let mut files = BTreeMap::new();
        for e in entries {
            let file = match fetched.get(&e.path) {
                Some((sha, read)) => (sha.clone(), read.clone()),
                None => (e.sha.clone(), None),
            };
            files.insert(e.path, file);
        }
        let pulls = gitea.pulls(&self.meta).await?;
        Ok(MetaRead { files, pulls })
    }

    /// One entry: (path, (blob sha, parsed or why not)); `None` when it could not be
    /// read this time (deleted since the listing). Gitea refusing this one file is a
    /// parse error on its path, so one bad file never stops the others; only an
    /// outage fails the refresh.
    async fn read_entry(
        &self,
        gitea: &Gitea,
        listed: DirEntry,
    ) -> Result<(String, (String, Option<Read>)), WorkerError> {
        let limit = self.config.max_entry_bytes;
        if listed.size > limit {
            let why = format!(
                "{TOO_LARGE}{} bytes; forge.max_entry_bytes is {limit}",
                listed.size
            );
            return Ok((listed.path, (listed.sha, Some(Err(why)))));
        }
        let read = match gitea
            .file(&self.meta, &listed.path, &self.config.main_branch)
            .await
        {
            Ok(Some(file)) => (file.sha, Some(entry::parse(&file.text, &self.meta.owner))),
            // Deleted between the listing and the read: the next refresh sees it gone.
            Ok(None) => (listed.sha, None),
            Err(error) if error.is_transient() => return Err(error.into()),
            Err(error) => (
                listed.sha,
                Some(Err(format!("Gitea could not give it: {error}"))),
            ),
        };
        Ok((listed.path, read))
    }

    /// Writes the entries of `rfcs/`: RFCs that changed, RFCs gone missing, and the
    /// parse errors. Two entries with one slug: the first by path wins, the other is
    /// a parse error.
    async fn write_entries(
        &self,
        tx: &mut OutboxTx<'_>,
        files: BTreeMap<String, (String, Option<Read>)>,
    ) -> Result<Vec<Event>, WorkerError> {
        let known = cache::live_entries(tx).await?;
        let old_errors = cache::parse_errors(tx).await?;
        // The RFC cached from each path: it stays as it was while its file does not
        // read (a parse error, or gone between the listing and the read).
        let at_path: HashMap<&str, &str> = known
            .iter()
            .map(|((path, _), slug)| (path.as_str(), slug.as_str()))
            .collect();
        let mut owners: HashMap<String, String> = HashMap::new();
        let mut kept = Vec::new();
        let mut errors = Vec::new();
        let mut events = Vec::new();
        for (path, (sha, read)) in files {
            let key = (path.clone(), sha.clone());
            let slug = match &read {
                Some(Ok(entry)) => entry.slug.clone(),
                Some(Err(why)) => {
                    kept.extend(at_path.get(path.as_str()).map(|s| (*s).to_owned()));
                    errors.push((path, sha, why.clone()));
                    continue;
                }
                None => match (known.get(&key), old_errors.get(&key)) {
                    (Some(slug), _) => slug.clone(),
                    (None, Some(why)) => {
                        kept.extend(at_path.get(path.as_str()).map(|s| (*s).to_owned()));
                        errors.push((path, sha, why.clone()));
                        continue;
                    }
                    // Not readable this time: the next refresh reads it.
                    (None, None) => {
                        kept.extend(at_path.get(path.as_str()).map(|s| (*s).to_owned()));
                        continue;
                    }
                },
            };
            if let Some(first) = owners.get(&slug) {
                let why = format!("slug {slug:?} is already defined by {first}");
                errors.push((path, sha, why));
                continue;
            }
            owners.insert(slug, path.clone());
            if let Some(Ok(entry)) = read {
                events.extend(cache::upsert_rfc(tx, &path, &sha, &entry).await?);
            }
        }
        let mut live: Vec<String> = owners.into_keys().collect();
        live.extend(kept);
        events.extend(cache::flag_missing(tx, &live).await?);
        events.extend(cache::set_parse_errors(tx, &self.meta, &errors).await?);
        Ok(events)
    }

    /// `forge.changed` for each active RFC repo never read yet (just graduated).
    async fn announce_new_repos(&self, tx: &mut OutboxTx<'_>) -> Result<Vec<Event>, WorkerError> {
        let mut events = Vec::new();
        let active = cache::active_repos(tx).await?;
        for repo in claim::never_read(tx, &active).await? {
            let Some(name) = RepoName::parse(&repo) else {
                continue;
            };
            let changed = ForgeChanged {
                owner: name.owner,
                name: name.name,
                trigger: ForgeTrigger::Graduated,
                gitea_event: None,
                delivery_id: None,
            };
            events.push(changed.event(SOURCE));
        }
        Ok(events)
    }

    async fn refresh_rfc(
        &self,
        gitea: &Gitea,
        repo: &RepoName,
        claim: Claim,
    ) -> Result<usize, WorkerError> {
        let branch = &self.config.main_branch;
        let document = match gitea.file(repo, DOCUMENT, branch).await {
            Err(error @ gitea::GiteaError::TooLarge { .. }) => {
                tracing::warn!(%error, "RFC.md not cached");
                None
            }
            read => read?,
        };
        let (branches, branches_complete) = gitea.branches(repo).await?;
        let read = RfcRead {
            document: document.map(|file| gitea::File {
                text: entry::storable(&file.text),
                ..file
            }),
            branches,
            branches_complete,
            pulls: gitea.pulls(repo).await?,
        };
        let mut tx = OutboxTx::begin(&self.pool).await?;
        if !claim::hold(&mut tx, repo, claim).await? {
            return Err(WorkerError::Fenced(format!("{repo} was taken over")));
        }
        let mut events = Vec::new();
        if let Some(slug) = cache::rfc_of_repo(&mut tx, repo).await? {
            let document = read
                .document
                .as_ref()
                .map(|f| (f.sha.as_str(), f.text.as_str()));
            events.extend(cache::set_document(&mut tx, &slug, document).await?);
            let branches = (read.branches.as_slice(), read.branches_complete);
            events.extend(write_branches(&mut tx, repo, &slug, branches).await?);
            let cached = cache::pulls(&mut tx, repo).await?;
            let logged = cache::logged_actors(&mut tx, repo).await?;
            let pulls = read
                .pulls
                .iter()
                .map(|pull| self.pull_row(pull, PullKind::RfcBranch, slug.clone(), &logged));
            events.extend(write_pulls(&mut tx, repo, pulls, &cached).await?);
        }
        claim::release(&mut tx, repo, claim).await?;
        let changes = events.len();
        tx.stage(&events);
        tx.commit(&self.doorbell).await?;
        Ok(changes)
    }

    /// A pull request as the cache keeps it, with the person behind it resolved.
    fn pull_row(
        &self,
        pull: &gitea::Pull,
        kind: PullKind,
        slug: String,
        logged: &HashMap<i64, String>,
    ) -> PullRow {
        let (opened_by, opened_by_source) = entry::opened_by(
            &pull.user.login,
            self.config.bot_user.as_deref(),
            logged.get(&pull.number).map(String::as_str),
            pull.body.as_deref().unwrap_or_default(),
        );
        let opened_by = entry::storable(&opened_by);
        let state = match (pull.state.as_str(), pull.merged) {
            (_, true) => PullState::Merged,
            ("open", _) => PullState::Open,
            _ => PullState::Closed,
        };
        PullRow {
            number: pull.number,
            rfc_slug: slug,
            kind,
            state,
            title: entry::storable(&pull.title),
            head_branch: entry::storable(&pull.head.name),
            head_sha: pull.head.sha.as_deref().map(entry::storable),
            opener: entry::storable(&pull.user.login),
            opened_by,
            opened_by_source,
            created_at: pull.created_at,
            closed_at: pull.closed_at,
            merged_at: pull.merged_at,
        }
    }
}

/// Writes each of `pulls` that differs from `cached`.
async fn write_pulls(
    tx: &mut OutboxTx<'_>,
    repo: &RepoName,
    pulls: impl Iterator<Item = PullRow>,
    cached: &HashMap<i64, PullRow>,
) -> Result<Vec<Event>, WorkerError> {
    let mut events = Vec::new();
    for pull in pulls {
        let old = cached.get(&pull.number);
        if old != Some(&pull) {
            events.push(cache::write_pull(tx, repo, &pull, old).await?);
        }
    }
    Ok(events)
}

/// Writes each branch that is new or moved, and marks each cached branch Gitea no
/// longer has as deleted (only from a `complete` listing: a branch that a shifting
/// page hid is not gone).
async fn write_branches(
    tx: &mut OutboxTx<'_>,
    repo: &RepoName,
    slug: &str,
    (branches, complete): (&[gitea::Branch], bool),
) -> Result<Vec<Event>, WorkerError> {
    let cached = cache::branches(tx, repo).await?;
    let mut events = Vec::new();
    let mut seen = HashSet::new();
    for branch in branches {
        let row = BranchRow {
            name: entry::storable(&branch.name),
            head_sha: entry::storable(&branch.commit.id),
            committed_at: branch.commit.timestamp,
            state: BranchState::Active,
        };
        let old = cached.get(&row.name);
        if old != Some(&row) {
            events.push(cache::write_branch(tx, repo, slug, &row, old).await?);
        }
        seen.insert(row.name);
    }
    for old in cached.values() {
        if complete && old.state == BranchState::Active && !seen.contains(&old.name) {
            let gone = BranchRow {
                state: BranchState::Deleted,
                ..old.clone()
            };
            events.push(cache::write_branch(tx, repo, slug, &gone, Some(old)).await?);
        }
    }
    Ok(events)
}
