//! # switchyard-gitea-standin
//!
//! A stand-in for a Gitea server, for switchyard's tests and benchmark (no registry
//! ships Gitea). [`GiteaStandin::start`] serves Gitea's REST paths and payload shapes
//! under `/api/v1` on `127.0.0.1:0`, from an in-memory forge the test changes with
//! [`GiteaStandin::put_file`], [`GiteaStandin::open_pull`] and friends. It also builds
//! webhook deliveries signed as Gitea signs them ([`GiteaStandin::webhook`]), which the
//! test POSTs to the receiver with [`Delivery::send`].
//!
//! A test can also make the forge misbehave: [`GiteaStandin::set_down`] (503 for
//! everything), [`GiteaStandin::fail_next`] (a few 5xx or 429 answers), and
//! [`GiteaStandin::hold`] (requests wait unanswered until released), and count the
//! requests it got with [`GiteaStandin::calls`].
//!
//! ## Layout
//! - `state`: the forge (repos, branches, files, pull requests) and git shas.
//! - `shapes`: Gitea's JSON shapes rendered from the state.
//! - `routes`: the router, the misbehaviour gate, auth and pagination.
//! - `webhook`: event payloads, signatures, headers, and the HTTP/1 sender.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

mod routes;
mod shapes;
mod state;
#[cfg(test)]
mod tests;
mod webhook;

pub use webhook::{Delivery, signature};

use shapes::Site;
use state::{DEFAULT_BRANCH, Forge};

/// A running Gitea stand-in. Clones share one forge and one server.
#[derive(Clone)]
pub struct GiteaStandin {
    shared: Arc<Shared>,
}

/// What the server and the test share.
pub(crate) struct Shared {
    /// The base URL, `http://127.0.0.1:PORT`.
    base: String,
    /// The token every API request must carry.
    token: String,
    forge: Mutex<Forge>,
    /// While set, every request gets 503.
    down: AtomicBool,
    /// `(how many more requests fail, with which status)`.
    failures: Mutex<(usize, u16)>,
    /// Requests answered, whatever their path or status.
    calls: AtomicU64,
    /// How many [`Hold`]s exist; requests wait while it is above zero.
    holds: watch::Sender<usize>,
    /// Requests waiting on a hold right now.
    held: AtomicUsize,
    /// Paths (substrings) of requests to stall next, each with its release.
    stalls: Mutex<Vec<(String, watch::Receiver<()>)>>,
    /// Requests whose answers wait for a release now.
    stalled: AtomicUsize,
}

impl Shared {
    fn forge(&self) -> MutexGuard<'_, Forge> {
        // A test that panicked mid-change poisons the lock; the state is still usable.
        self.forge
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn site<'a>(&'a self, forge: &'a Forge) -> Site<'a> {
        Site {
            base: &self.base,
            forge,
        }
    }

    /// The release of the first stall whose path `path` contains, taken off the list.
    fn take_stall(&self, path: &str) -> Option<watch::Receiver<()>> {
        let mut stalls = self.stalls.lock().unwrap_or_else(|p| p.into_inner());
        let index = stalls
            .iter()
            .position(|(part, _)| path.contains(part.as_str()))?;
        Some(stalls.remove(index).1)
    }

    /// Takes one queued failure, if any.
    fn take_failure(&self) -> Option<u16> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (left, status) = &mut *failures;
        (*left > 0).then(|| {
            *left -= 1;
            *status
        })
    }
}

impl GiteaStandin {
    /// Starts serving on 127.0.0.1:0. API requests must carry
    /// `Authorization: token <token>` (or `Bearer <token>`), else 401 with Gitea's
    /// `APIError` body `{"message","url"}`.
    pub async fn start(token: &str) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the Gitea stand-in on 127.0.0.1:0");
        let port = listener
            .local_addr()
            .expect("the listener's address")
            .port();
        let shared = Arc::new(Shared {
            base: format!("http://127.0.0.1:{port}"),
            token: token.to_owned(),
            forge: Mutex::new(Forge::default()),
            down: AtomicBool::new(false),
            failures: Mutex::new((0, 500)),
            calls: AtomicU64::new(0),
            holds: watch::Sender::new(0),
            held: AtomicUsize::new(0),
            stalls: Mutex::new(Vec::new()),
            stalled: AtomicUsize::new(0),
        });
        let app = routes::router(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { shared }
    }

    /// The Gitea base URL, `http://127.0.0.1:PORT` (without `/api/v1`).
    pub fn url(&self) -> String {
        self.shared.base.clone()
    }

    /// Creates `owner/name` with branch `main` holding one empty initial commit.
    pub fn create_repo(&self, full_name: &str) {
        self.shared.forge().create_repo(full_name);
    }

    /// Writes a file on `branch` (creating the branch from main if missing) as a new
    /// commit; returns the file's blob sha (git blob sha1, hex).
    pub fn put_file(&self, full_name: &str, branch: &str, path: &str, content: &str) -> String {
        self.shared
            .forge()
            .put_file(full_name, branch, path, content)
    }

    /// Removes a file from `branch` as a new commit.
    pub fn delete_file(&self, full_name: &str, branch: &str, path: &str) {
        self.shared.forge().delete_file(full_name, branch, path);
    }

    /// Creates or moves a branch to a new commit (new head sha, timestamp now);
    /// returns the head sha.
    pub fn push_branch(&self, full_name: &str, branch: &str) -> String {
        self.shared.forge().push_branch(full_name, branch)
    }

    /// Deletes a branch.
    pub fn delete_branch(&self, full_name: &str, branch: &str) {
        self.shared.forge().delete_branch(full_name, branch);
    }

    /// Opens a pull request from `head` into main; returns its number (per repo,
    /// from 1).
    pub fn open_pull(
        &self,
        full_name: &str,
        head: &str,
        title: &str,
        body: &str,
        opener_login: &str,
    ) -> i64 {
        self.shared
            .forge()
            .open_pull(full_name, head, title, body, opener_login)
    }

    /// Closes a pull request without merging it.
    pub fn close_pull(&self, full_name: &str, number: i64) {
        self.shared.forge().close_pull(full_name, number);
    }

    /// Merges a pull request into main (head's files laid over main's) and closes it.
    pub fn merge_pull(&self, full_name: &str, number: i64) {
        self.shared.forge().merge_pull(full_name, number);
    }

    /// The head sha of `branch`, if it exists.
    pub fn head(&self, full_name: &str, branch: &str) -> Option<String> {
        let forge = self.shared.forge();
        forge
            .existing(full_name)
            .branches
            .get(branch)
            .map(|b| b.head.sha.clone())
    }

    /// While down, every API request is answered 503 (Gitea behind a proxy that lost
    /// it).
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// The next `n` API requests are answered with `status` (429 adds
    /// `Retry-After: 1`), then normal service resumes.
    pub fn fail_next(&self, n: usize, status: u16) {
        *self
            .shared
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = (n, status);
    }

    /// Holds every API request (it waits, unanswered) until the returned guard is
    /// released or dropped. A held request reads the forge after its release.
    #[must_use = "requests are held only while the guard lives"]
    pub fn hold(&self) -> Hold {
        self.shared.holds.send_modify(|holds| *holds += 1);
        Hold {
            shared: self.shared.clone(),
        }
    }

    /// Stalls the next request whose path contains `path_contains`: it is answered
    /// from the forge *as at its arrival*, but the answer is delivered only once the
    /// guard is released or dropped; every other request passes. A test uses it to
    /// make one reader's view of Gitea older than another's.
    #[must_use = "the request is stalled only while the guard lives"]
    pub fn stall_next(&self, path_contains: &str) -> Stall {
        let (release, waiter) = watch::channel(());
        self.shared
            .stalls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((path_contains.to_owned(), waiter));
        Stall { _release: release }
    }

    /// How many answers are stalled now (computed, waiting for their release).
    pub fn stalled(&self) -> usize {
        self.shared.stalled.load(Ordering::SeqCst)
    }

    /// How many requests are waiting on a hold now.
    pub fn held(&self) -> usize {
        self.shared.held.load(Ordering::SeqCst)
    }

    /// API requests answered so far (every path, every status).
    pub fn calls(&self) -> u64 {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// Sets [`calls`](Self::calls) back to zero.
    pub fn reset_calls(&self) {
        self.shared.calls.store(0, Ordering::SeqCst);
    }

    /// A signed delivery as Gitea would send it for `event` about `full_name`:
    /// `push` (branch main), `pull_request` (the newest pull request; action
    /// `opened`, or `closed` once closed or merged), `create` (the branch pushed
    /// last) or `delete` (the branch deleted last). Panics on any other event.
    pub fn webhook(&self, event: &str, full_name: &str, secret: &str) -> Delivery {
        let forge = self.shared.forge();
        let repo = forge.existing(full_name);
        let target = match event {
            "push" => Some(DEFAULT_BRANCH.to_owned()),
            "pull_request" => repo.pulls.last().map(|p| p.number.to_string()),
            "create" => repo.last_pushed.clone(),
            "delete" => repo.last_deleted.clone(),
            other => panic!("the Gitea stand-in sends no {other:?} webhook"),
        };
        let target =
            target.unwrap_or_else(|| panic!("nothing on {full_name} for a {event} webhook"));
        drop(forge);
        self.webhook_about(event, full_name, &target, secret)
    }

    /// Like [`webhook`](Self::webhook), naming what the event is about: the branch for
    /// `push`, `create` and `delete`, the pull request's number for `pull_request`.
    pub fn webhook_about(
        &self,
        event: &str,
        full_name: &str,
        target: &str,
        secret: &str,
    ) -> Delivery {
        let forge = self.shared.forge();
        let site = self.shared.site(&forge);
        let payload = webhook::payload(&site, forge.existing(full_name), event, target);
        let body = serde_json::to_vec_pretty(&payload).expect("a JSON value serializes");
        Delivery::new(event, body, secret)
    }
}

/// A stalled answer is delivered when this guard is released or dropped.
pub struct Stall {
    _release: watch::Sender<()>,
}

impl Stall {
    /// Delivers the stalled answer (the same as dropping the guard).
    pub fn release(self) {}
}

/// Requests wait while this guard lives; [`Hold::release`] or dropping it lets them
/// go on.
pub struct Hold {
    shared: Arc<Shared>,
}

impl Hold {
    /// Lets held requests go on (the same as dropping the guard).
    pub fn release(self) {}
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.shared.holds.send_modify(|holds| *holds -= 1);
    }
}
