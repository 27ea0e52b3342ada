//! The forge's names, decided once for the API and the forge role alike: a Gitea repo
//! (`owner/name`) and which RFC states are no longer followed.

use std::fmt;

/// Longest Gitea owner or repo name.
pub const MAX_NAME: usize = 100;

/// RFC states (compared without case) whose own repo is no longer read; their cached
/// rows stay.
pub const INACTIVE_STATES: &[&str] = &["withdrawn", "rejected", "archived"];

/// A Gitea repo, `owner/name`, lower case (Gitea compares names without case).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName {
    /// The owning user or organization, lower case.
    pub owner: String,
    /// The repo's name, lower case.
    pub name: String,
}

impl RepoName {
    /// `owner/name` with Gitea-legal names (1 to [`MAX_NAME`] letters, digits, `-`,
    /// `_` and `.`; not `.` or `..`), lower-cased; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let (owner, name) = text.split_once('/')?;
        (is_legal(owner) && is_legal(name)).then(|| Self {
            owner: owner.to_ascii_lowercase(),
            name: name.to_ascii_lowercase(),
        })
    }
}

fn is_legal(part: &str) -> bool {
    (1..=MAX_NAME).contains(&part.len())
        && part != "."
        && part != ".."
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names_are_gitea_names_lower_cased() {
        let repo = RepoName::parse("Acme/RFC.meta").unwrap();
        assert_eq!(repo.to_string(), "acme/rfc.meta");
        for bad in ["acme", "a/b/c", "/b", "a/", "./b", "a/..", "a b/c", "a/ü"] {
            assert!(RepoName::parse(bad).is_none(), "{bad:?}");
        }
        assert!(RepoName::parse(&format!("a/{}", "b".repeat(MAX_NAME))).is_some());
        assert!(RepoName::parse(&format!("a/{}", "b".repeat(MAX_NAME + 1))).is_none());
    }
}
