//! Gitea's JSON shapes, rendered from the forge's state: `User`, `Repository`,
//! `PayloadCommit`, `Branch`, `PullRequest` and `ContentsResponse`, with the field
//! names and nulls of Gitea 1.22 (`modules/structs`). `routes` answers with them and
//! `webhook` wraps them in event payloads.
//!
//! Fields a client never reads (counters, feature flags) carry Gitea's defaults for
//! a fresh repo, so a client that deserializes the full struct still succeeds.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::state::{Commit, Entry, Forge, Pull, Repo};

/// Where the forge is served and what it holds: everything a shape needs.
pub(crate) struct Site<'a> {
    /// `http://127.0.0.1:PORT`, Gitea's `ROOT_URL` without the trailing slash.
    pub base: &'a str,
    pub forge: &'a Forge,
}

/// Go's `time.Time` JSON form, as Gitea writes it.
pub(crate) fn time(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn time_or_null(at: Option<&DateTime<Utc>>) -> Value {
    at.map_or(Value::Null, |at| json!(time(at)))
}

impl Site<'_> {
    fn html(&self, repo: &Repo) -> String {
        format!("{}/{}", self.base, repo.full_name())
    }

    fn api(&self, repo: &Repo) -> String {
        format!("{}/api/v1/repos/{}", self.base, repo.full_name())
    }

    /// Gitea's `User` (with the `username` alias Gitea adds).
    pub fn user(&self, login: &str) -> Value {
        json!({
            "id": self.forge.user_id(login),
            "login": login,
            "login_name": "",
            "source_id": 0,
            "full_name": "",
            "email": format!("{login}@noreply.localhost"),
            "avatar_url": format!("{}/avatars/{}", self.base, login.to_lowercase()),
            "html_url": format!("{}/{login}", self.base),
            "language": "",
            "is_admin": false,
            "last_login": "0001-01-01T00:00:00Z",
            "created": time(&self.forge.started),
            "restricted": false,
            "active": false,
            "prohibit_login": false,
            "location": "",
            "website": "",
            "description": "",
            "visibility": "public",
            "followers_count": 0,
            "following_count": 0,
            "starred_repos_count": 0,
            "username": login,
        })
    }

    /// Gitea's `Repository`.
    pub fn repository(&self, repo: &Repo) -> Value {
        let html = self.html(repo);
        let open_pulls = repo.pulls.iter().filter(|p| p.is_open()).count();
        let mut repository = json!({
            "id": repo.id, "owner": self.user(&repo.owner), "name": repo.name,
            "full_name": repo.full_name(), "description": "", "empty": false,
            "private": false, "fork": false, "template": false, "parent": null,
            "mirror": false, "size": 0, "language": "",
            "languages_url": format!("{}/languages", self.api(repo)),
            "html_url": html, "url": self.api(repo), "link": "",
            "ssh_url": format!("git@127.0.0.1:{}.git", repo.full_name()),
            "clone_url": format!("{html}.git"), "original_url": "", "website": "",
            "stars_count": 0, "forks_count": 0, "watchers_count": 1,
            "open_issues_count": 0, "open_pr_counter": open_pulls, "release_counter": 0,
            "default_branch": crate::state::DEFAULT_BRANCH, "archived": false,
            "created_at": time(&repo.created_at), "updated_at": time(&repo.created_at),
            "archived_at": "1970-01-01T00:00:00Z",
            "permissions": {"admin": true, "push": true, "pull": true},
        });
        // Split in two: one `json!` this long passes the macro recursion limit.
        let settings = json!({
            "has_issues": true, "internal_tracker": {
                "enable_time_tracker": true, "allow_only_contributors_to_track_time": true,
                "enable_issue_dependencies": true,
            },
            "has_wiki": true, "has_pull_requests": true, "has_projects": true,
            "has_releases": true, "has_packages": true, "has_actions": false,
            "ignore_whitespace_conflicts": false, "allow_merge_commits": true,
            "allow_rebase": true, "allow_rebase_explicit": true, "allow_squash_merge": true,
            "allow_fast_forward_only_merge": true, "allow_rebase_update": true,
            "default_delete_branch_after_merge": false, "default_merge_style": "merge",
            "default_allow_maintainer_edit": false, "avatar_url": "", "internal": false,
            "mirror_interval": "", "object_format_name": "sha1",
            "mirror_updated": "0001-01-01T00:00:00Z", "repo_transfer": null,
            "topics": null, "licenses": null,
        });
        if let (Value::Object(fields), Value::Object(more)) = (&mut repository, settings) {
            fields.extend(more);
        }
        repository
    }

    /// Gitea's `PayloadCommit`. Branch listings leave `added`/`removed`/`modified`
    /// null as Gitea does; push payloads fill them (`with_files`).
    pub fn payload_commit(&self, repo: &Repo, commit: &Commit, with_files: bool) -> Value {
        let person = json!({
            "name": commit.author,
            "email": format!("{}@noreply.localhost", commit.author),
            "username": commit.author,
        });
        let files = |paths: &Vec<String>| {
            if with_files {
                json!(paths)
            } else {
                Value::Null
            }
        };
        json!({
            "id": commit.sha,
            "message": commit.message,
            "url": format!("{}/commit/{}", self.html(repo), commit.sha),
            "author": person,
            "committer": person,
            "verification": null,
            "timestamp": time(&commit.timestamp),
            "added": files(&commit.added),
            "removed": files(&commit.removed),
            "modified": files(&commit.modified),
        })
    }

    /// Gitea's `Branch`: an unprotected branch the token's user may push and merge.
    pub fn branch(&self, repo: &Repo, name: &str, head: &Commit) -> Value {
        json!({
            "name": name,
            "commit": self.payload_commit(repo, head, false),
            "protected": false,
            "required_approvals": 0,
            "enable_status_check": false,
            "status_check_contexts": [],
            "user_can_push": true,
            "user_can_merge": true,
            "effective_branch_protection_name": "",
        })
    }

    /// Gitea's `PRBranchInfo` for a branch of `repo` at `sha`.
    fn pr_branch(&self, repo: &Repo, name: &str, sha: &str) -> Value {
        json!({
            "label": name, "ref": name, "sha": sha,
            "repo_id": repo.id, "repo": self.repository(repo),
        })
    }

    /// Gitea's `PullRequest`. An open one reports its head branch's current head.
    pub fn pull_request(&self, repo: &Repo, pull: &Pull) -> Value {
        let html = format!("{}/pulls/{}", self.html(repo), pull.number);
        let live = repo.branches.get(&pull.head_ref).filter(|_| pull.is_open());
        let head_sha = live.map_or(pull.head_sha.as_str(), |b| b.head.sha.as_str());
        let base_sha = repo
            .branches
            .get(&pull.base_ref)
            .map_or("", |b| b.head.sha.as_str());
        let merged = pull.merged.as_ref();
        json!({
            "id": pull.id, "url": html, "number": pull.number,
            "user": self.user(&pull.opener), "title": pull.title, "body": pull.body,
            "labels": [], "milestone": null, "assignee": null, "assignees": null,
            "requested_reviewers": null, "requested_reviewers_teams": null,
            "state": if pull.is_open() { "open" } else { "closed" },
            "draft": false, "is_locked": false, "comments": 0, "review_comments": 0,
            "additions": 0, "deletions": 0, "changed_files": 0,
            "html_url": html, "diff_url": format!("{html}.diff"),
            "patch_url": format!("{html}.patch"),
            "mergeable": pull.is_open(), "merged": merged.is_some(),
            "merged_at": time_or_null(merged.map(|m| &m.at)),
            "merge_commit_sha": merged.map(|m| m.commit_sha.clone()),
            "merged_by": merged.map(|m| self.user(&m.by)),
            "allow_maintainer_edit": false,
            "base": self.pr_branch(repo, &pull.base_ref, base_sha),
            "head": self.pr_branch(repo, &pull.head_ref, head_sha),
            "merge_base": pull.merge_base, "due_date": null,
            "created_at": time(&pull.created_at), "updated_at": time(&pull.updated_at),
            "closed_at": time_or_null(pull.closed_at.as_ref()), "pin_order": 0,
        })
    }

    /// Gitea's `ContentsResponse` for `path` at `reference`; `in_list` leaves a
    /// file's `encoding` and `content` null, as a directory listing does.
    pub fn contents(
        &self,
        repo: &Repo,
        reference: &Reference,
        path: &str,
        entry: &Entry<'_>,
        in_list: bool,
    ) -> Value {
        let name = path.rsplit('/').next().unwrap_or_default();
        let ref_query: String =
            form_urlencoded::byte_serialize(reference.name.as_bytes()).collect();
        let url = format!("{}/contents/{path}?ref={ref_query}", self.api(repo));
        let html_url = format!(
            "{}/src/{}/{}/{path}",
            self.html(repo),
            reference.kind,
            reference.name
        );
        let (kind, sha, last, size, content, git_url, download) = match entry {
            Entry::File(blob) => (
                "file",
                blob.sha.clone(),
                blob.last_commit.1.clone(),
                blob.content.len(),
                (!in_list).then(|| STANDARD.encode(&blob.content)),
                format!("{}/git/blobs/{}", self.api(repo), blob.sha),
                Some(format!(
                    "{}/raw/{}/{}/{path}",
                    self.html(repo),
                    reference.kind,
                    reference.name
                )),
            ),
            Entry::Dir {
                sha,
                last_commit_sha,
            } => {
                let git_url = format!("{}/git/trees/{sha}", self.api(repo));
                (
                    "dir",
                    sha.clone(),
                    last_commit_sha.clone(),
                    0,
                    None,
                    git_url,
                    None,
                )
            }
        };
        json!({
            "name": name, "path": path, "sha": sha, "last_commit_sha": last,
            "type": kind, "size": size,
            "encoding": content.as_ref().map(|_| "base64"), "content": content,
            "target": null, "url": url, "html_url": html_url, "git_url": git_url,
            "download_url": download, "submodule_git_url": null,
            "_links": {"self": url, "git": git_url, "html": html_url},
        })
    }
}

/// A ref as a contents request resolved it: its name and whether it named a branch
/// or a commit (Gitea's `src/branch/…` and `src/commit/…` links).
pub(crate) struct Reference {
    pub name: String,
    pub kind: &'static str,
}
