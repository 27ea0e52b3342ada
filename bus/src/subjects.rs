//! Every subject switchyard publishes or consumes, built in one place.
//!
//! Functions here return *logical* subjects such as `topology.{id}.mutation.applied`.
//! They are what the outbox stores and what the envelope's `subject` says. On the wire
//! a [`Namespace`] puts the deployment's prefix in front, so one NATS server can host
//! many deployments (and many concurrent tests) without their streams overlapping.

use uuid::Uuid;

/// Root tokens of every logical subject; the stream captures exactly these.
pub const ROOTS: [&str; 7] = [
    "topology",
    "interface",
    "repo",
    "graph",
    "plugin",
    "forge",
    "rfc",
];

/// `topology.{id}.mutation.enqueued`: the API accepted a mutation.
pub fn mutation_enqueued(topology_id: Uuid) -> String {
    format!("topology.{topology_id}.mutation.enqueued")
}

/// `topology.{id}.mutation.applied`: the mutator applied a mutation.
pub fn mutation_applied(topology_id: Uuid) -> String {
    format!("topology.{topology_id}.mutation.applied")
}

/// `topology.{id}.mutation.failed`: a mutation could not apply and was marked failed.
pub fn mutation_failed(topology_id: Uuid) -> String {
    format!("topology.{topology_id}.mutation.failed")
}

/// `topology.{id}.status`: the topology's version and status after a committed batch.
pub fn topology_status(topology_id: Uuid) -> String {
    format!("topology.{topology_id}.status")
}

/// `topology.{id}.>`: everything that happens to one topology.
pub fn topology_all(topology_id: Uuid) -> String {
    format!("topology.{topology_id}.>")
}

/// `interface.{id}.draft`: an interface change was drafted or its draft edited.
pub fn interface_draft(change_id: Uuid) -> String {
    format!("interface.{change_id}.draft")
}

/// `interface.{id}.published`: an interface change was published; the notifier's work.
pub fn interface_published(change_id: Uuid) -> String {
    format!("interface.{change_id}.published")
}

/// `interface.{id}.resolved`: every affected repo has adapted to the change.
pub fn interface_resolved(change_id: Uuid) -> String {
    format!("interface.{change_id}.resolved")
}

/// `repo.{slug}.inbox`: a message arrived in the repo's inbox.
pub fn repo_inbox(slug: &str) -> String {
    format!("repo.{slug}.inbox")
}

/// `repo.{slug}.inbox.read`: a message of the repo's inbox was marked read.
pub fn repo_inbox_read(slug: &str) -> String {
    format!("repo.{slug}.inbox.read")
}

/// `repo.{slug}.updated`: the repo was registered, edited or archived.
pub fn repo_updated(slug: &str) -> String {
    format!("repo.{slug}.updated")
}

/// Whether `slug` is a legal repo slug: lowercase letters, digits and dashes, starting
/// with a letter or digit, at most 63 characters. Slugs are subject tokens.
pub fn is_valid_slug(slug: &str) -> bool {
    let mut chars = slug.chars();
    slug.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `repo.{slug}.progress`: a progress event was recorded on the repo.
pub fn repo_progress(slug: &str) -> String {
    format!("repo.{slug}.progress")
}

/// `repo.{slug}.>`: everything that happens to one repo.
pub fn repo_all(slug: &str) -> String {
    format!("repo.{slug}.>")
}

/// `graph.{slug}.migration.{phase}`: a migration run was requested, started, made
/// progress, succeeded, failed, was asked to stop (`cancel_requested`) or was
/// cancelled.
pub fn graph_migration(slug: &str, phase: &str) -> String {
    format!("graph.{slug}.migration.{phase}")
}

/// `graph.{slug}.created`: a graph was created.
pub fn graph_created(slug: &str) -> String {
    format!("graph.{slug}.created")
}

/// `graph.{slug}.nodes.written`: nodes were written to a graph.
pub fn graph_nodes_written(slug: &str) -> String {
    format!("graph.{slug}.nodes.written")
}

/// `plugin.{name}.version`: a plugin was registered, or got a new version.
pub fn plugin_version(name: &str) -> String {
    format!("plugin.{name}.version")
}

/// `graph.{slug}.>`: everything that happens to one graph.
pub fn graph_all(slug: &str) -> String {
    format!("graph.{slug}.>")
}

/// A Gitea owner or repo name as one subject token: lower case (Gitea compares names
/// without case), with `.`, which Gitea allows in names but a subject cannot hold in a
/// token, written `%2E`. Gitea names are letters, digits, `-`, `_` and `.`, so no name
/// contains `%` and the encoding is unambiguous.
pub fn forge_token(name: &str) -> String {
    name.to_lowercase().replace('.', "%2E")
}

/// `forge.{owner}.{repo}.changed`: Gitea said (webhook), or switchyard decided
/// (sweep, graduation, a recorded action), that repo `owner/repo` must be read again.
/// The names are encoded by [`forge_token`].
pub fn forge_changed(owner: &str, repo: &str) -> String {
    format!("forge.{}.{}.changed", forge_token(owner), forge_token(repo))
}

/// `forge.sweep.{phase}`: a sweep of the forge cache was `requested` (the forge role's
/// work), made `progress` (after each repo) or `finished`.
pub fn forge_sweep(phase: &str) -> String {
    format!("forge.sweep.{phase}")
}

/// `forge.{owner}.{repo}.parse_error`: an entry of the meta repo `owner/repo` does not
/// read as an RFC, or (with no error) reads again.
pub fn forge_parse_error(owner: &str, repo: &str) -> String {
    format!(
        "forge.{}.{}.parse_error",
        forge_token(owner),
        forge_token(repo)
    )
}

/// `rfc.{slug}.updated`: a cached RFC (its entry or its `RFC.md`) changed.
pub fn rfc_updated(slug: &str) -> String {
    format!("rfc.{slug}.updated")
}

/// `rfc.{slug}.branch.{action}`: a branch of the RFC's repo was `created`, `updated`
/// (new head) or `deleted`.
pub fn rfc_branch(slug: &str, action: &str) -> String {
    format!("rfc.{slug}.branch.{action}")
}

/// `rfc.{slug}.pull.{action}`: a pull request about the RFC was `opened`, `updated`,
/// `merged` or `closed`.
pub fn rfc_pull(slug: &str, action: &str) -> String {
    format!("rfc.{slug}.pull.{action}")
}

/// `rfc.{slug}.>`: everything that happens to one RFC.
pub fn rfc_all(slug: &str) -> String {
    format!("rfc.{slug}.>")
}

/// Whether `filter` is a legal subject filter: dot-separated tokens of letters,
/// digits, `-`, `_` and `%` (see [`forge_token`]), or the wildcards `*` and (last
/// only) `>`.
pub fn is_valid_filter(filter: &str) -> bool {
    let tokens: Vec<&str> = filter.split('.').collect();
    filter.len() <= 256
        && tokens.iter().enumerate().all(|(i, token)| match *token {
            "*" => true,
            ">" => i == tokens.len() - 1,
            t => {
                !t.is_empty()
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '%'))
            }
        })
}

/// Filter matching every mutation event of every topology (enqueued, applied, failed).
pub const ALL_MUTATION_EVENTS: &str = "topology.*.mutation.*";

/// Filter matching every published interface change: the notifier's work.
pub const ALL_INTERFACES_PUBLISHED: &str = "interface.*.published";

/// Filter matching every requested graph migration: the migrator's work.
pub const ALL_MIGRATIONS_REQUESTED: &str = "graph.*.migration.requested";

/// Filter matching every topology's `mutation.enqueued`: the mutator's work.
pub const ALL_MUTATIONS_ENQUEUED: &str = "topology.*.mutation.enqueued";

/// Filter matching every repo the forge must read again: the forge role's work.
pub const ALL_FORGE_CHANGED: &str = "forge.*.*.changed";

/// Subject of a requested sweep: the forge role's other work.
pub const FORGE_SWEEP_REQUESTED: &str = "forge.sweep.requested";

/// A deployment's subject prefix. Empty by default: subjects are then exactly the
/// logical ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespace {
    /// Either empty or the prefix followed by a `.`.
    prefix: String,
}

/// A prefix that is not a dot-separated list of legal subject tokens.
#[derive(Debug, thiserror::Error)]
#[error(
    "subject prefix {0:?} is invalid: use dot-separated tokens of letters, digits, '-' and '_'"
)]
pub struct InvalidPrefix(pub String);

impl Namespace {
    /// Validates `prefix` (for example `tenant-a` or `ci.run42`); `""` means none.
    pub fn new(prefix: &str) -> Result<Self, InvalidPrefix> {
        if prefix.is_empty() {
            return Ok(Self::default());
        }
        let legal_token = |t: &str| {
            !t.is_empty()
                && t.len() <= 64
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if prefix.split('.').all(legal_token) {
            Ok(Self {
                prefix: format!("{prefix}."),
            })
        } else {
            Err(InvalidPrefix(prefix.to_owned()))
        }
    }

    /// The wire subject (or filter) for a logical one.
    pub fn qualify(&self, logical: &str) -> String {
        format!("{}{logical}", self.prefix)
    }

    /// The logical subject of a wire subject, if it belongs to this namespace.
    pub fn logical<'a>(&self, wire: &'a str) -> Option<&'a str> {
        wire.strip_prefix(self.prefix.as_str())
    }

    /// The subjects the deployment's stream captures.
    pub fn stream_subjects(&self) -> Vec<String> {
        ROOTS
            .iter()
            .map(|root| self.qualify(&format!("{root}.>")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_prepended_and_stripped() {
        let ns = Namespace::new("tenant-a").unwrap();
        let id = Uuid::nil();
        let wire = ns.qualify(&mutation_applied(id));
        assert_eq!(
            wire,
            "tenant-a.topology.00000000-0000-0000-0000-000000000000.mutation.applied"
        );
        assert_eq!(ns.logical(&wire), Some(mutation_applied(id).as_str()));
        assert_eq!(ns.stream_subjects()[0], "tenant-a.topology.>");
    }

    #[test]
    fn forge_names_become_single_tokens() {
        assert_eq!(
            forge_changed("Acme", "rfc.meta"),
            "forge.acme.rfc%2Emeta.changed"
        );
        assert_eq!(forge_changed("a_b", "c-d"), "forge.a_b.c-d.changed");
    }

    #[test]
    fn empty_prefix_means_logical_subjects() {
        let ns = Namespace::new("").unwrap();
        assert_eq!(ns.qualify("topology.x.status"), "topology.x.status");
    }

    #[test]
    fn illegal_prefixes_are_refused() {
        for bad in ["a..b", "a b", "a.*", "a.>", ".a", "a."] {
            assert!(Namespace::new(bad).is_err(), "{bad:?} accepted");
        }
    }
}
