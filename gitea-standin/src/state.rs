//! The forge itself: repos, their branches (each a head commit and a file tree), pull
//! requests and the users who appear in them, all in memory.
//!
//! Tests change it through [`GiteaStandin`](crate::GiteaStandin)'s methods; `routes`
//! and `webhook` read it and render Gitea's shapes with `shapes`. Shas follow git
//! where a client can check them: a blob's is `sha1("blob {len}\0{content}")` and a
//! directory's is its git tree sha. Commit shas are unique but not computed from a
//! commit object; no history is kept beyond each commit's parent.
//!
//! Misusing the state (a repo that does not exist, deleting a missing file) panics:
//! it is a test's mistake, not a forge condition.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SubsecRound, Utc};
use sha1::{Digest, Sha1};

/// Every repo's default branch, as `create_repo` makes it.
pub(crate) const DEFAULT_BRANCH: &str = "main";

/// The all-zero sha Gitea puts in `before` when a branch is new.
pub(crate) const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// One commit: the head of a branch.
#[derive(Clone)]
pub(crate) struct Commit {
    pub sha: String,
    /// The previous head of the branch; `None` for a repo's first commit.
    pub parent: Option<String>,
    pub message: String,
    /// Login of the author and committer.
    pub author: String,
    /// Git commit times have whole seconds.
    pub timestamp: DateTime<Utc>,
    /// Paths this commit added, removed and modified (a push payload lists them).
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub modified: Vec<String>,
}

/// A file on a branch.
#[derive(Clone)]
pub(crate) struct Blob {
    pub content: Vec<u8>,
    pub sha: String,
    /// The commit that last changed this path, and its order number (to find a
    /// directory's latest change).
    pub last_commit: (u64, String),
}

/// A branch: its head commit and the full file tree at that commit.
#[derive(Clone)]
pub(crate) struct Branch {
    pub head: Commit,
    pub files: BTreeMap<String, Blob>,
}

/// What a path names on a branch.
pub(crate) enum Entry<'a> {
    File(&'a Blob),
    Dir {
        sha: String,
        last_commit_sha: String,
    },
}

/// How a pull request was merged.
pub(crate) struct Merge {
    pub at: DateTime<Utc>,
    pub commit_sha: String,
    pub by: String,
}

/// A pull request from `head_ref` into `base_ref`.
pub(crate) struct Pull {
    pub id: i64,
    pub number: i64,
    pub title: String,
    pub body: String,
    pub opener: String,
    pub head_ref: String,
    /// The head sha when the pull request stopped following its branch (closed), or
    /// when it was opened; an open one reports its branch's current head.
    pub head_sha: String,
    pub base_ref: String,
    pub merge_base: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub merged: Option<Merge>,
}

impl Pull {
    /// Gitea's `state`: a merged pull request is `closed` too.
    pub fn is_open(&self) -> bool {
        self.closed_at.is_none()
    }
}

/// One repository.
pub(crate) struct Repo {
    pub id: i64,
    pub owner: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub branches: BTreeMap<String, Branch>,
    pub pulls: Vec<Pull>,
    /// The branch a `create` / `delete` webhook names when the test does not say.
    pub last_pushed: Option<String>,
    pub last_deleted: Option<String>,
}

impl Repo {
    /// `owner/name` as created.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    /// A branch by name, or the branch whose head is `reference` (a commit sha).
    pub fn branch(&self, reference: &str) -> Option<&Branch> {
        self.branches
            .get(reference)
            .or_else(|| self.branches.values().find(|b| b.head.sha == reference))
    }

    /// The pull request with this number.
    pub fn pull(&self, number: i64) -> Option<&Pull> {
        self.pulls.iter().find(|p| p.number == number)
    }
}

/// The whole forge.
pub(crate) struct Forge {
    repos: HashMap<String, Repo>,
    /// Login (lower-cased) → user id, in order of first appearance.
    users: HashMap<String, i64>,
    next_id: i64,
    commits: u64,
    pub started: DateTime<Utc>,
}

impl Default for Forge {
    fn default() -> Self {
        Self {
            repos: HashMap::new(),
            users: HashMap::new(),
            next_id: 0,
            commits: 0,
            started: now(),
        }
    }
}

impl Forge {
    /// A repo by owner and name; Gitea matches both case-insensitively.
    pub fn repo(&self, owner: &str, name: &str) -> Option<&Repo> {
        self.repos.get(&format!("{owner}/{name}").to_lowercase())
    }

    /// A repo by `owner/name`, which a test must have created.
    pub fn existing(&self, full_name: &str) -> &Repo {
        let repo = self.repos.get(&full_name.to_lowercase());
        repo.unwrap_or_else(|| panic!("no repo {full_name} in the Gitea stand-in"))
    }

    fn existing_mut(&mut self, full_name: &str) -> &mut Repo {
        let repo = self.repos.get_mut(&full_name.to_lowercase());
        repo.unwrap_or_else(|| panic!("no repo {full_name} in the Gitea stand-in"))
    }

    /// A user's id; a login seen nowhere yet reports 0.
    pub fn user_id(&self, login: &str) -> i64 {
        self.users.get(&login.to_lowercase()).copied().unwrap_or(0)
    }

    fn register(&mut self, login: &str) {
        if !self.users.contains_key(&login.to_lowercase()) {
            let id = self.users.len() as i64 + 1;
            self.users.insert(login.to_lowercase(), id);
        }
    }

    /// Creates `owner/name` with branch `main` holding one empty commit.
    pub fn create_repo(&mut self, full_name: &str) {
        let (owner, name) = full_name
            .split_once('/')
            .unwrap_or_else(|| panic!("repo name {full_name:?} is not owner/name"));
        assert!(
            !self.repos.contains_key(&full_name.to_lowercase()),
            "repo {full_name} exists already"
        );
        self.register(owner);
        self.next_id += 1;
        let head = self.new_commit(full_name, None, "Initial commit\n", owner);
        let main = Branch {
            head,
            files: BTreeMap::new(),
        };
        let repo = Repo {
            id: self.next_id,
            owner: owner.to_owned(),
            name: name.to_owned(),
            created_at: now(),
            branches: BTreeMap::from([(DEFAULT_BRANCH.to_owned(), main)]),
            pulls: Vec::new(),
            last_pushed: None,
            last_deleted: None,
        };
        self.repos.insert(full_name.to_lowercase(), repo);
    }

    fn new_commit(
        &mut self,
        salt: &str,
        parent: Option<String>,
        message: &str,
        author: &str,
    ) -> Commit {
        self.commits += 1;
        let seed = format!(
            "commit {} {salt} {:?}",
            self.commits,
            std::time::SystemTime::now()
        );
        Commit {
            sha: hex::encode(Sha1::digest(seed.as_bytes())),
            parent,
            message: message.to_owned(),
            author: author.to_owned(),
            timestamp: now(),
            added: Vec::new(),
            removed: Vec::new(),
            modified: Vec::new(),
        }
    }

    /// Makes a new commit on `branch` (branched from main when missing) whose tree is
    /// the old one changed by `change`; returns the commit's sha.
    fn commit(
        &mut self,
        full_name: &str,
        branch: &str,
        message: &str,
        change: impl FnOnce(&mut Branch, &(u64, String)),
    ) -> String {
        let repo = self.existing(full_name);
        let mut next = match repo.branches.get(branch) {
            Some(existing) => existing.clone(),
            None => repo.branches[DEFAULT_BRANCH].clone(),
        };
        let author = repo.owner.clone();
        let parent = Some(next.head.sha.clone());
        next.head = self.new_commit(&format!("{full_name} {branch}"), parent, message, &author);
        let this_commit = (self.commits, next.head.sha.clone());
        change(&mut next, &this_commit);
        let sha = next.head.sha.clone();
        let repo = self.existing_mut(full_name);
        repo.branches.insert(branch.to_owned(), next);
        repo.last_pushed = Some(branch.to_owned());
        sha
    }

    /// Writes `path` on `branch` as a new commit; returns the blob sha.
    pub fn put_file(&mut self, full_name: &str, branch: &str, path: &str, content: &str) -> String {
        let path = path.trim_matches('/').to_owned();
        let sha = blob_sha(content.as_bytes());
        let message = format!("Update {path}\n");
        let blob_sha = sha.clone();
        self.commit(full_name, branch, &message, move |b, last_commit| {
            let blob = Blob {
                content: content.into(),
                sha: blob_sha,
                last_commit: last_commit.clone(),
            };
            match b.files.insert(path.clone(), blob) {
                Some(_) => b.head.modified.push(path),
                None => b.head.added.push(path),
            }
        });
        sha
    }

    /// Removes `path` from `branch` as a new commit.
    pub fn delete_file(&mut self, full_name: &str, branch: &str, path: &str) {
        let path = path.trim_matches('/').to_owned();
        let message = format!("Delete {path}\n");
        self.commit(full_name, branch, &message, move |b, _| {
            assert!(
                b.files.remove(&path).is_some(),
                "no file {path} on {full_name}@{branch}"
            );
            b.head.removed.push(path);
        });
    }

    /// Moves (or creates) `branch` to a new commit with the same tree.
    pub fn push_branch(&mut self, full_name: &str, branch: &str) -> String {
        self.commit(full_name, branch, "Update branch\n", |_, _| {})
    }

    /// Deletes `branch`; open pull requests from it keep their last head sha.
    pub fn delete_branch(&mut self, full_name: &str, branch: &str) {
        let repo = self.existing_mut(full_name);
        let gone = repo.branches.remove(branch);
        let gone = gone.unwrap_or_else(|| panic!("no branch {branch} on {full_name}"));
        for pull in repo
            .pulls
            .iter_mut()
            .filter(|p| p.is_open() && p.head_ref == branch)
        {
            pull.head_sha.clone_from(&gone.head.sha);
        }
        repo.last_deleted = Some(branch.to_owned());
    }

    /// Opens a pull request from `head` into main; returns its number.
    pub fn open_pull(
        &mut self,
        full_name: &str,
        head: &str,
        title: &str,
        body: &str,
        opener: &str,
    ) -> i64 {
        self.register(opener);
        self.next_id += 1;
        let id = self.next_id;
        let repo = self.existing_mut(full_name);
        let head_sha = match repo.branches.get(head) {
            Some(branch) => branch.head.sha.clone(),
            None => panic!("no branch {head} on {full_name} to open a pull request from"),
        };
        let number = repo.pulls.len() as i64 + 1;
        let at = now();
        repo.pulls.push(Pull {
            id,
            number,
            title: title.to_owned(),
            body: body.to_owned(),
            opener: opener.to_owned(),
            head_ref: head.to_owned(),
            head_sha,
            base_ref: DEFAULT_BRANCH.to_owned(),
            merge_base: repo.branches[DEFAULT_BRANCH].head.sha.clone(),
            created_at: at,
            updated_at: at,
            closed_at: None,
            merged: None,
        });
        number
    }

    /// Closes a pull request without merging it.
    pub fn close_pull(&mut self, full_name: &str, number: i64) {
        let repo = self.existing_mut(full_name);
        let head = open_head(repo, number);
        let pull = pull_mut(repo, number);
        let at = now();
        (pull.head_sha, pull.closed_at, pull.updated_at) = (head, Some(at), at);
    }

    /// Merges a pull request: main gets a merge commit whose tree is main's with the
    /// head's files laid over it (files deleted on the head stay on main).
    pub fn merge_pull(&mut self, full_name: &str, number: i64) {
        let repo = self.existing(full_name);
        let head = open_head(repo, number);
        let head_ref = repo
            .pull(number)
            .map(|p| p.head_ref.clone())
            .unwrap_or_default();
        let head_files = repo.branches.get(&head_ref).map(|b| b.files.clone());
        let merger = repo.owner.clone();
        let message = format!("Merge pull request '#{number}' from {head_ref} into main\n");
        let merge_sha = self.commit(full_name, DEFAULT_BRANCH, &message, |main, _| {
            for (path, blob) in head_files.unwrap_or_default() {
                match main.files.get(&path) {
                    Some(old) if old.sha == blob.sha => continue,
                    Some(_) => main.head.modified.push(path.clone()),
                    None => main.head.added.push(path.clone()),
                }
                main.files.insert(path, blob);
            }
        });
        let pull = pull_mut(self.existing_mut(full_name), number);
        let at = now();
        (pull.head_sha, pull.closed_at, pull.updated_at) = (head, Some(at), at);
        pull.merged = Some(Merge {
            at,
            commit_sha: merge_sha,
            by: merger,
        });
    }
}

impl Branch {
    /// What `path` names: a file, a directory (the root is `""`), or nothing.
    pub fn entry(&self, path: &str) -> Option<Entry<'_>> {
        if let Some(blob) = self.files.get(path) {
            return Some(Entry::File(blob));
        }
        let prefix = dir_prefix(path);
        let under = self
            .files
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix));
        let latest = under.map(|(_, b)| &b.last_commit).max();
        match latest {
            Some((_, sha)) => Some(Entry::Dir {
                sha: self.tree_sha(path),
                last_commit_sha: sha.clone(),
            }),
            None if path.is_empty() => Some(Entry::Dir {
                sha: self.tree_sha(path),
                last_commit_sha: self.head.sha.clone(),
            }),
            None => None,
        }
    }

    /// The direct children of directory `dir`, by name: `(name, path)`.
    pub fn children(&self, dir: &str) -> BTreeMap<String, String> {
        let prefix = dir_prefix(dir);
        let under = self
            .files
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix));
        under
            .map(|(path, _)| {
                let name = path[prefix.len()..].split('/').next().unwrap_or_default();
                (name.to_owned(), format!("{prefix}{name}"))
            })
            .collect()
    }

    /// The git tree sha of directory `dir` (`""` is the root).
    fn tree_sha(&self, dir: &str) -> String {
        let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
        for (name, path) in self.children(dir) {
            let (mode, sha, key) = match self.files.get(&path) {
                Some(blob) => ("100644", blob.sha.clone(), name.clone()),
                None => ("40000", self.tree_sha(&path), format!("{name}/")),
            };
            let mut line = format!("{mode} {name}\0").into_bytes();
            line.extend(hex::decode(sha).unwrap_or_default());
            entries.push((key, line));
        }
        // Git orders a tree's entries by name, a directory's name ending in '/'.
        entries.sort();
        let body: Vec<u8> = entries.into_iter().flat_map(|(_, line)| line).collect();
        object_sha("tree", &body)
    }
}

/// The sha of the head an open pull request follows, or its stored one once closed.
fn open_head(repo: &Repo, number: i64) -> String {
    let pull = repo.pull(number);
    let pull = pull.unwrap_or_else(|| panic!("no pull request #{number} on {}", repo.full_name()));
    assert!(
        pull.is_open(),
        "pull request #{number} on {} is closed already",
        repo.full_name()
    );
    repo.branches
        .get(&pull.head_ref)
        .map_or(pull.head_sha.clone(), |b| b.head.sha.clone())
}

fn pull_mut(repo: &mut Repo, number: i64) -> &mut Pull {
    let full_name = repo.full_name();
    let pull = repo.pulls.iter_mut().find(|p| p.number == number);
    pull.unwrap_or_else(|| panic!("no pull request #{number} on {full_name}"))
}

fn dir_prefix(dir: &str) -> String {
    if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    }
}

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

/// A git object's sha: `sha1("{kind} {len}\0{body}")`, hex.
fn object_sha(kind: &str, body: &[u8]) -> String {
    let mut hasher = Sha1::new();
    hasher.update(format!("{kind} {}\0", body.len()).as_bytes());
    hasher.update(body);
    hex::encode(hasher.finalize())
}

/// A git blob's sha, as Gitea reports a file's `sha`.
pub(crate) fn blob_sha(content: &[u8]) -> String {
    object_sha("blob", content)
}
