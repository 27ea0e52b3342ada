//! What the notifier writes, composed from the change alone: the inbox message's
//! subject and body, and the origin repo's milestone. Pure, so it is tested directly.

use serde_json::{Value, json};
use switchyard_domain::status::{ChangeType, InterfaceType};
use uuid::Uuid;

/// Paths listed in full in a message; the rest are counted.
pub const PATHS_SHOWN: usize = 5;

/// The published change, as the notifier reads it.
#[derive(Clone, Debug)]
pub struct PublishedChange {
    pub id: Uuid,
    pub repo_slug: String,
    pub title: String,
    pub description: String,
    pub interface_type: InterfaceType,
    pub change_type: ChangeType,
    pub affected_paths: Vec<String>,
    pub affected_repo_slugs: Vec<String>,
}

/// Which affected repos get a message, and which cannot.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recipients {
    /// Registered and active: each gets one inbox message.
    pub notified: Vec<String>,
    /// Not registered: recorded in the milestone, not silently dropped.
    pub unregistered: Vec<String>,
    /// Archived: they accept no new messages.
    pub archived: Vec<String>,
}

/// `[BREAKING] <title>`: the change type in upper case, then the title.
pub fn subject(change: &PublishedChange) -> String {
    format!(
        "[{}] {}",
        change.change_type.as_str().to_uppercase(),
        change.title
    )
}

/// The message body for `recipient`: the interface and change types, the first
/// [`PATHS_SHOWN`] paths and `(+N more)`, the description, and how to resolve it.
pub fn body(change: &PublishedChange, recipient: &str) -> String {
    let origin = &change.repo_slug;
    let mut paths = String::new();
    for path in change.affected_paths.iter().take(PATHS_SHOWN) {
        paths.push_str(&format!("  - {path}\n"));
    }
    let hidden = change.affected_paths.len().saturating_sub(PATHS_SHOWN);
    if hidden > 0 {
        paths.push_str(&format!("  (+{hidden} more)\n"));
    }
    if paths.is_empty() {
        paths.push_str("  (none listed)\n");
    }
    format!(
        "{origin} published a {change_type} change to its {interface_type}.\n\
         \n\
         Interface type: {interface_type}\n\
         Change type: {change_type}\n\
         Affected paths:\n\
         {paths}\
         \n\
         {description}\n\
         \n\
         How to resolve: adapt {recipient} to this change and let {origin} know. Once every \
         affected repo has adapted, {origin} marks the change resolved \
         (POST /api/v1/interface-changes/{id}/resolve) and it leaves {recipient}'s dispatch.\n",
        change_type = change.change_type,
        interface_type = change.interface_type,
        description = change.description.trim_end(),
        id = change.id,
    )
}

/// The summary of the origin repo's milestone.
pub fn milestone_summary(change: &PublishedChange) -> String {
    format!("Interface change published: {}", change.title)
}

/// The milestone's detail: the change, both types, who was affected and who was told.
pub fn milestone_detail(change: &PublishedChange, recipients: &Recipients) -> Value {
    json!({
        "interface_change_id": change.id,
        "interface_type": change.interface_type,
        "change_type": change.change_type,
        "affected_repo_slugs": change.affected_repo_slugs,
        "notified_repo_slugs": recipients.notified,
        "unregistered_repo_slugs": recipients.unregistered,
        "archived_repo_slugs": recipients.archived,
        "notifications_sent": recipients.notified.len(),
    })
}

/// The milestone of a change the notifier gave up on: no message was sent, and
/// `notifications_failed` says why.
pub fn gave_up_detail(change: &PublishedChange, reason: &str) -> Value {
    json!({
        "interface_change_id": change.id,
        "interface_type": change.interface_type,
        "change_type": change.change_type,
        "affected_repo_slugs": change.affected_repo_slugs,
        "notifications_sent": 0,
        "notifications_failed": reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(paths: usize) -> PublishedChange {
        PublishedChange {
            id: Uuid::nil(),
            repo_slug: "billing".to_owned(),
            title: "Drop v1 invoices".to_owned(),
            description: "Use /v2/invoices.".to_owned(),
            interface_type: InterfaceType::RestApi,
            change_type: ChangeType::Breaking,
            affected_paths: (1..=paths).map(|i| format!("/v1/p{i}")).collect(),
            affected_repo_slugs: vec!["web".to_owned()],
        }
    }

    #[test]
    fn the_subject_shouts_the_change_type() {
        assert_eq!(subject(&change(1)), "[BREAKING] Drop v1 invoices");
    }

    #[test]
    fn eight_paths_show_five_and_three_more() {
        let body = body(&change(8), "web");
        for shown in 1..=5 {
            assert!(body.contains(&format!("  - /v1/p{shown}\n")), "{body}");
        }
        for hidden in 6..=8 {
            assert!(!body.contains(&format!("/v1/p{hidden}")), "{body}");
        }
        assert!(body.contains("(+3 more)"), "{body}");
        assert!(body.contains("Interface type: rest_api"), "{body}");
        assert!(body.contains("Change type: breaking"), "{body}");
        assert!(body.contains("Use /v2/invoices."), "{body}");
        assert!(body.contains("How to resolve"), "{body}");
    }

    #[test]
    fn five_paths_or_fewer_have_no_more_line() {
        assert!(!body(&change(5), "web").contains("more)"));
        assert!(body(&change(0), "web").contains("(none listed)"));
    }
}
