//! What the forge role reads out of Gitea's text, pure: an RFC entry (YAML front
//! matter between `---` lines at the top of a Markdown file, then the body), the kind
//! and slug a pull request's head branch names, and the person behind a pull request.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Deserialize;
use switchyard_bus::subjects::is_valid_slug;
use switchyard_domain::status::{OpenedBySource, PullKind};

use super::RepoName;

/// An RFC entry as the cache keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub slug: String,
    pub title: String,
    pub state: String,
    /// The front matter's `id`, as written.
    pub rfc_id: Option<String>,
    /// The RFC's own repo, `owner/name`, lower case.
    pub repo: Option<String>,
    pub proposed_by: Option<String>,
    pub proposed_at: Option<DateTime<Utc>>,
    pub graduated_at: Option<DateTime<Utc>>,
    pub graduated_by: Option<String>,
    pub owners: Vec<String>,
    pub arbiters: Vec<String>,
    pub tags: Vec<String>,
    /// The Markdown after the front matter.
    pub body: String,
}

/// A scalar YAML may give as a number or a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(i64),
    Float(f64),
    Text(String),
}

impl Scalar {
    fn text(self) -> String {
        match self {
            Self::Int(n) => n.to_string(),
            Self::Float(x) => x.to_string(),
            Self::Text(s) => s,
        }
    }
}

#[derive(Deserialize)]
struct FrontMatter {
    slug: Option<String>,
    title: Option<String>,
    state: Option<String>,
    id: Option<Scalar>,
    repo: Option<String>,
    proposed_by: Option<String>,
    proposed_at: Option<Scalar>,
    graduated_at: Option<Scalar>,
    graduated_by: Option<String>,
    #[serde(default)]
    owners: Vec<String>,
    #[serde(default)]
    arbiters: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// Reads an entry: `---`, YAML, `---`, then the body. `default_owner` is the owner of a
/// `repo:` given without one (the meta repo's). The error says what is wrong, in words
/// for the person who edits the file.
pub fn parse(text: &str, default_owner: &str) -> Result<Entry, String> {
    if text.contains('\0') {
        // Postgres text cannot hold it: stored, it would fail the whole refresh.
        return Err("the entry contains a NUL character (U+0000)".to_owned());
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    if lines.next().map(str::trim_end) != Some("---") {
        return Err("no front matter: the file must start with a `---` line".to_owned());
    }
    let mut yaml = String::new();
    let mut closed = false;
    for line in lines.by_ref() {
        if line.trim_end() == "---" {
            closed = true;
            break;
        }
        yaml.push_str(line);
    }
    if !closed {
        return Err("front matter is not closed by a `---` line".to_owned());
    }
    let body: String = lines.collect();
    let front: FrontMatter = if yaml.trim().is_empty() {
        return Err("front matter is empty".to_owned());
    } else {
        serde_saphyr::from_str(&yaml).map_err(|e| format!("front matter: {e}"))?
    };
    entry(front, body, default_owner)
}

fn entry(front: FrontMatter, body: String, default_owner: &str) -> Result<Entry, String> {
    let entry = fields(front, body, default_owner)?;
    let texts = [&entry.slug, &entry.title, &entry.state]
        .into_iter()
        .chain(entry.rfc_id.iter())
        .chain(entry.proposed_by.iter())
        .chain(entry.graduated_by.iter())
        .chain(entry.owners.iter())
        .chain(entry.arbiters.iter())
        .chain(entry.tags.iter());
    // YAML escapes (`"\0"`, `"\x00"`, `"\u0000"`) decode to NUL, which Postgres text
    // cannot hold.
    if texts.into_iter().any(|text| text.contains('\0')) {
        return Err("front matter holds a NUL character (U+0000)".to_owned());
    }
    Ok(entry)
}

fn fields(front: FrontMatter, body: String, default_owner: &str) -> Result<Entry, String> {
    let required = |value: Option<String>, key: &str| {
        value
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("front matter has no `{key}`"))
    };
    let slug = required(front.slug, "slug")?;
    if !is_valid_slug(&slug) {
        return Err(format!(
            "slug {slug:?} is not a slug: lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters"
        ));
    }
    let repo = front
        .repo
        .map(|repo| repo_of(&repo, default_owner))
        .transpose()?;
    Ok(Entry {
        slug,
        title: required(front.title, "title")?,
        state: required(front.state, "state")?,
        rfc_id: front.id.map(Scalar::text),
        repo,
        proposed_by: front.proposed_by,
        proposed_at: front
            .proposed_at
            .map(|v| time(v, "proposed_at"))
            .transpose()?,
        graduated_at: front
            .graduated_at
            .map(|v| time(v, "graduated_at"))
            .transpose()?,
        graduated_by: front.graduated_by,
        owners: front.owners,
        arbiters: front.arbiters,
        tags: front.tags,
        body,
    })
}

/// `owner/name` or `name` (owned by `default_owner`), as a lower-case `owner/name`.
fn repo_of(text: &str, default_owner: &str) -> Result<String, String> {
    let full = if text.contains('/') {
        text.trim().to_owned()
    } else {
        format!("{default_owner}/{}", text.trim())
    };
    RepoName::parse(&full)
        .map(|repo| repo.to_string())
        .ok_or_else(|| format!("repo {text:?} is not a Gitea repo name (`owner/name` or `name`)"))
}

/// A date (`2024-05-01`, midnight UTC) or a time (RFC 3339, or `YYYY-MM-DD HH:MM:SS`
/// in UTC).
fn time(value: Scalar, key: &str) -> Result<DateTime<Utc>, String> {
    let text = value.text();
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    if let Ok(time) = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S") {
        return Ok(time.and_utc());
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|date| {
            date.and_hms_opt(0, 0, 0)
                .expect("midnight exists")
                .and_utc()
        })
        .map_err(|_| format!("{key} {text:?} is not a date (YYYY-MM-DD) or an RFC 3339 time"))
}

/// The kind and RFC slug a meta-repo pull request's head branch names:
/// `propose/<slug>` (idea), `edit/<slug>/…` (body edit), `claim/<slug>`,
/// `metadata/<slug>`. `None` for any other branch, or a slug that is not one.
pub fn meta_pull_kind(head: &str) -> Option<(PullKind, String)> {
    let (prefix, rest) = head.split_once('/')?;
    let (kind, slug) = match prefix {
        "propose" => (PullKind::Idea, rest),
        "edit" => (PullKind::MetaBodyEdit, rest.split('/').next()?),
        "claim" => (PullKind::MetaClaim, rest),
        "metadata" => (PullKind::MetaMetadata, rest),
        _ => return None,
    };
    is_valid_slug(slug).then(|| (kind, slug.to_owned()))
}

/// `text` as Postgres can store it: any NUL (U+0000), which `text` columns cannot
/// hold, replaced by U+FFFD. Everything else Gitea names is stored as given.
pub fn storable(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// The login in the last `On-behalf-of: Name <login>` trailer of `body`, if any.
pub fn on_behalf_of(body: &str) -> Option<String> {
    body.lines().rev().find_map(|line| {
        let (key, value) = line.trim().split_once(':')?;
        if !key.trim().eq_ignore_ascii_case("on-behalf-of") {
            return None;
        }
        let (_, login) = value.trim().rsplit_once('<')?;
        let login = login.strip_suffix('>')?.trim();
        // A Gitea login: at most 100 of its letters, digits, `-`, `_` and `.`.
        let legal = !login.is_empty()
            && login.len() <= 100
            && login
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        legal.then(|| login.to_owned())
    })
}

/// The person behind a pull request opened by `opener`: the opener itself unless it is
/// the bot account; then the actor switchyard logged when its own action opened it;
/// then the body's `On-behalf-of` trailer; else the raw login.
pub fn opened_by(
    opener: &str,
    bot: Option<&str>,
    logged_actor: Option<&str>,
    body: &str,
) -> (String, OpenedBySource) {
    let is_bot = bot.is_some_and(|bot| bot.eq_ignore_ascii_case(opener));
    if !is_bot {
        return (opener.to_owned(), OpenedBySource::Opener);
    }
    if let Some(actor) = logged_actor {
        return (actor.to_owned(), OpenedBySource::ActionsLog);
    }
    if let Some(login) = on_behalf_of(body) {
        return (login, OpenedBySource::Trailer);
    }
    (opener.to_owned(), OpenedBySource::Login)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: &str = "---\nslug: graph-cache\ntitle: A graph cache\nstate: active\nid: 42\nrepo: rfc-graph-cache\nproposed_by: ada\nproposed_at: 2024-05-01\ngraduated_at: 2024-06-02T10:00:00Z\nowners: [ada, bob]\ntags:\n  - cache\n---\n# Body\n\ntext\n";

    #[test]
    fn an_entry_reads_front_matter_and_body() {
        let entry = parse(ENTRY, "Acme").unwrap();
        assert_eq!(entry.slug, "graph-cache");
        assert_eq!(entry.rfc_id.as_deref(), Some("42"));
        assert_eq!(entry.repo.as_deref(), Some("acme/rfc-graph-cache"));
        assert_eq!(entry.owners, ["ada", "bob"]);
        assert_eq!(entry.tags, ["cache"]);
        assert_eq!(
            entry.proposed_at.unwrap().to_rfc3339(),
            "2024-05-01T00:00:00+00:00"
        );
        assert_eq!(entry.body, "# Body\n\ntext\n");
    }

    #[test]
    fn broken_entries_say_what_is_wrong() {
        let cases = [
            ("no front matter", "# just text"),
            ("not closed", "---\nslug: a\n"),
            ("no `title`", "---\nslug: a\nstate: x\n---\n"),
            (
                "not a slug",
                "---\nslug: Not_A_Slug\ntitle: t\nstate: s\n---\n",
            ),
            (
                "not a date",
                "---\nslug: a\ntitle: t\nstate: s\nproposed_at: soon\n---\n",
            ),
            ("front matter:", "---\nslug: [unclosed\n---\n"),
            ("NUL", "---\nslug: a\ntitle: t\u{0}\nstate: s\n---\n"),
            ("NUL", "---\nslug: a\ntitle: \"t\\0\"\nstate: s\n---\n"),
            (
                "NUL",
                "---\nslug: a\ntitle: t\nstate: s\ntags: [\"\\u0000\"]\n---\n",
            ),
        ];
        for (expected, text) in cases {
            let error = parse(text, "acme").unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn head_branches_name_kind_and_slug() {
        assert_eq!(
            meta_pull_kind("propose/x"),
            Some((PullKind::Idea, "x".into()))
        );
        assert_eq!(
            meta_pull_kind("edit/x/typo-fix"),
            Some((PullKind::MetaBodyEdit, "x".into()))
        );
        assert_eq!(
            meta_pull_kind("claim/x"),
            Some((PullKind::MetaClaim, "x".into()))
        );
        assert_eq!(
            meta_pull_kind("metadata/x"),
            Some((PullKind::MetaMetadata, "x".into()))
        );
        assert_eq!(meta_pull_kind("main"), None);
        assert_eq!(meta_pull_kind("claim/Bad_Slug"), None);
    }

    #[test]
    fn the_person_behind_a_pull_request_falls_back_in_order() {
        let body = "Adds x.\n\nOn-behalf-of: Ada Lovelace <ada>\n";
        assert_eq!(
            opened_by("bob", Some("bot"), None, body),
            ("bob".into(), OpenedBySource::Opener)
        );
        assert_eq!(
            opened_by("bot", Some("bot"), Some("carol"), body),
            ("carol".into(), OpenedBySource::ActionsLog)
        );
        assert_eq!(
            opened_by("bot", Some("bot"), None, body),
            ("ada".into(), OpenedBySource::Trailer)
        );
        assert_eq!(
            opened_by("bot", Some("bot"), None, "no trailer"),
            ("bot".into(), OpenedBySource::Login)
        );
    }
}
