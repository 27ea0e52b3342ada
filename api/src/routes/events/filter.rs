//! Which clients a subject goes to: the hub's index of its clients by their logical
//! subject filter.
//!
//! Almost every client follows one resource (`topology.{id}.>`, `graph.{slug}.>`,
//! `repo.{slug}.>`, `rfc.{slug}.>`): those are kept by their `root.token` prefix, so
//! finding them is one map lookup per message whatever the number of clients. Any
//! other filter (an admin's `GET /events?subject=`, with `*` or `>` anywhere) is
//! matched one by one; there are few of them.
//!
//! Filters and subjects here are logical (no deployment prefix): the hub strips the
//! prefix before it asks. `async_nats` has no subject matcher, hence [`matches`].

use std::collections::HashMap;

/// Identifies one client of the hub (never reused within a process).
pub(super) type ClientId = u64;

/// Whether the subject `subject` (no wildcards) matches the filter `filter`: tokens
/// compare equal, `*` matches exactly one token, and a final `>` one or more.
pub(super) fn matches(filter: &str, subject: &str) -> bool {
    let mut filter = filter.split('.');
    let mut subject = subject.split('.');
    loop {
        match (filter.next(), subject.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(wanted), Some(token)) if wanted == token => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The `root.token` of a `root.token.>` filter whose two tokens are literal.
fn prefix_of_filter(filter: &str) -> Option<&str> {
    let prefix = filter.strip_suffix(".>")?;
    let (root, token) = prefix.split_once('.')?;
    let literal = |t: &str| !t.is_empty() && t != "*" && t != ">" && !t.contains('.');
    (literal(root) && literal(token)).then_some(prefix)
}

/// The `root.token` of a subject of at least three tokens: the key of the prefix
/// filters it matches (`root.token.>` needs a token after the prefix).
fn prefix_of_subject(subject: &str) -> Option<&str> {
    let first = subject.find('.')?;
    let second = first + 1 + subject[first + 1..].find('.')?;
    Some(&subject[..second])
}

/// Clients (`T`) by filter, found by the subjects they match.
#[derive(Debug)]
pub(super) struct Subscribers<T> {
    /// Clients whose filter is `root.token.>`, by `root.token`.
    by_prefix: HashMap<Box<str>, HashMap<ClientId, T>>,
    /// Every other client, with its filter.
    others: HashMap<ClientId, (Box<str>, T)>,
}

impl<T> Default for Subscribers<T> {
    fn default() -> Self {
        Self {
            by_prefix: HashMap::new(),
            others: HashMap::new(),
        }
    }
}

impl<T> Subscribers<T> {
    /// Adds client `id` following `filter`.
    pub(super) fn insert(&mut self, id: ClientId, filter: &str, client: T) {
        match prefix_of_filter(filter) {
            Some(prefix) => {
                self.by_prefix
                    .entry(prefix.into())
                    .or_default()
                    .insert(id, client);
            }
            None => {
                self.others.insert(id, (filter.into(), client));
            }
        }
    }

    /// Takes client `id` (which followed `filter`) out, if it is still here.
    pub(super) fn remove(&mut self, id: ClientId, filter: &str) -> Option<T> {
        let Some(prefix) = prefix_of_filter(filter) else {
            return self.others.remove(&id).map(|(_, client)| client);
        };
        let clients = self.by_prefix.get_mut(prefix)?;
        let client = clients.remove(&id);
        if clients.is_empty() {
            self.by_prefix.remove(prefix);
        }
        client
    }

    /// Calls `visit` on every client whose filter matches `subject`; a client for
    /// which it returns `false` is taken out (and dropped).
    pub(super) fn visit(&mut self, subject: &str, mut visit: impl FnMut(&mut T) -> bool) {
        if let Some(prefix) = prefix_of_subject(subject)
            && let Some(clients) = self.by_prefix.get_mut(prefix)
        {
            clients.retain(|_, client| visit(client));
            if clients.is_empty() {
                self.by_prefix.remove(prefix);
            }
        }
        if !self.others.is_empty() {
            self.others
                .retain(|_, (filter, client)| !matches(filter, subject) || visit(client));
        }
    }

    /// Whether no client is left.
    pub(super) fn is_empty(&self) -> bool {
        self.by_prefix.is_empty() && self.others.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_tokens_must_all_be_equal() {
        assert!(matches("topology.a.status", "topology.a.status"));
        assert!(!matches("topology.a.status", "topology.b.status"));
        assert!(!matches("topology.a", "topology.a.status"));
        assert!(!matches("topology.a.status", "topology.a"));
        assert!(!matches("topology.a.status", "topology.a.statusx"));
    }

    #[test]
    fn a_star_is_exactly_one_token() {
        assert!(matches("topology.*.status", "topology.a.status"));
        assert!(matches("*.*.*", "repo.web.inbox"));
        assert!(!matches("topology.*.status", "topology.a.b.status"));
        assert!(!matches("topology.*", "topology.a.status"));
        assert!(matches(
            "topology.*.mutation.*",
            "topology.a.mutation.applied"
        ));
        assert!(!matches("topology.*.mutation.*", "topology.a.status"));
    }

    #[test]
    fn a_final_gt_is_one_or_more_tokens() {
        assert!(matches(">", "topology"));
        assert!(matches(">", "topology.a.status"));
        assert!(matches("topology.>", "topology.a"));
        assert!(matches("topology.a.>", "topology.a.mutation.applied"));
        assert!(!matches("topology.a.>", "topology.a"));
        assert!(!matches("topology.a.>", "topology.ab.status"));
        assert!(matches("*.a.>", "repo.a.inbox.read"));
        assert!(!matches("*.a.>", "repo.b.inbox"));
    }

    #[test]
    fn only_literal_root_token_gt_filters_are_indexed() {
        assert_eq!(prefix_of_filter("topology.a.>"), Some("topology.a"));
        assert_eq!(prefix_of_filter("forge.acme.>"), Some("forge.acme"));
        for other in [
            ">",
            "topology.>",
            "topology.*.>",
            "*.a.>",
            "topology.a.b.>",
            "topology.a.status",
            "topology.a.*",
        ] {
            assert_eq!(prefix_of_filter(other), None, "{other}");
        }
        assert_eq!(prefix_of_subject("topology.a.status"), Some("topology.a"));
        assert_eq!(prefix_of_subject("repo.web.inbox.read"), Some("repo.web"));
        assert_eq!(prefix_of_subject("topology.a"), None);
        assert_eq!(prefix_of_subject("topology"), None);
    }

    /// The ids `subject` reaches, sorted.
    fn reached(subscribers: &mut Subscribers<ClientId>, subject: &str) -> Vec<ClientId> {
        let mut ids = Vec::new();
        subscribers.visit(subject, |id| {
            ids.push(*id);
            true
        });
        ids.sort_unstable();
        ids
    }

    #[test]
    fn a_subject_reaches_exactly_the_clients_whose_filter_matches() {
        let mut subscribers = Subscribers::default();
        let filters = [
            "topology.a.>",
            "topology.a.>",
            "topology.b.>",
            "topology.*.status",
            ">",
            "topology.a.status",
            "repo.a.>",
            "topology.>",
        ];
        for (id, filter) in filters.iter().enumerate() {
            subscribers.insert(id as ClientId, filter, id as ClientId);
        }
        for subject in [
            "topology.a.status",
            "topology.a.mutation.applied",
            "topology.b.status",
            "topology.c.status",
            "repo.a.inbox",
            "topology.a",
            "graph.g.created",
        ] {
            let expected: Vec<ClientId> = (0..filters.len() as ClientId)
                .filter(|id| matches(filters[*id as usize], subject))
                .collect();
            assert_eq!(reached(&mut subscribers, subject), expected, "{subject}");
        }
    }

    #[test]
    fn clients_leave_by_removal_or_when_visit_refuses_them() {
        let mut subscribers = Subscribers::default();
        subscribers.insert(1, "topology.a.>", 1);
        subscribers.insert(2, "topology.a.>", 2);
        subscribers.insert(3, "topology.*.status", 3);
        assert_eq!(subscribers.remove(1, "topology.a.>"), Some(1));
        assert_eq!(subscribers.remove(1, "topology.a.>"), None);
        subscribers.visit("topology.a.status", |id| *id != 3);
        assert_eq!(reached(&mut subscribers, "topology.a.status"), vec![2]);
        assert_eq!(subscribers.remove(3, "topology.*.status"), None);
        assert_eq!(subscribers.remove(2, "topology.a.>"), Some(2));
        assert!(subscribers.is_empty());
        assert!(
            subscribers.by_prefix.is_empty(),
            "an emptied prefix lingers"
        );
    }
}
