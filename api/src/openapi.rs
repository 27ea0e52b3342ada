//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations, and the pieces every operation shares: the bearer security scheme and
//! the error responses.
//!
//! The document is also the route table: [`crate::auth::RoutePolicy`] reads each
//! operation's required role from its `bearer` scope, or its empty security
//! requirement (`security(())`) for the one public operation.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::openapi::header::Header;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

/// The base document: metadata and the security scheme; paths are nested in by
/// [`crate::router`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "switchyard",
        description = "Message-bus worker fleet: enqueue work over HTTP, follow it live.",
    ),
    modifiers(&BearerScheme),
    components(schemas(ErrorBody, ErrorDetail)),
    tags(
        (name = "topologies", description = "Topology documents, edited only through mutations"),
        (name = "mutations", description = "RFC 6902 JSON Patch edits, applied in order by the mutator"),
        (name = "auth", description = "Tokens for event streams"),
        (name = "events", description = "Live events over SSE, resumable with Last-Event-ID"),
        (name = "audit", description = "The audit trail of the registry, interface changes, inbox messages, plugins and graphs"),
        (name = "repos", description = "The repo registry: repos, lookups by remote and fingerprint, inboxes and dispatch"),
        (name = "interface changes", description = "Interface changes, drafted, published to the affected repos' inboxes, and resolved"),
        (name = "graphs", description = "Plugins and their versions, graphs and their nodes, and schema migration runs"),
        (name = "rfcs", description = "The forge cache's RFCs, their branches and pull requests, kept from Gitea"),
        (name = "forge", description = "The Gitea webhook, and the forge cache's repos, parse errors, sweeps and actions log"),
    )
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "HS256 JWT from `switchyard token`. The scope of each operation names the least role it needs: viewer < operator < admin.",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// Every error answer: a machine-readable code and a message saying what was wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// For example `not_found`, `invalid_request`, `unauthorized`.
    pub code: String,
    /// What was wrong, in words a client can act on.
    pub message: String,
}

/// The refusals any authenticated operation may answer with.
pub struct Refusals;

impl IntoResponses for Refusals {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        [
            (
                "400",
                "Malformed request: bad JSON syntax, header or id, or not valid HTTP (an unencoded character in the path or query)",
            ),
            ("401", "Missing, expired or invalid credentials"),
            ("403", "The token's role is not enough for this operation"),
            ("404", "The resource does not exist"),
            ("408", "The request took longer than http.request_timeout"),
            ("413", "The body, or the document, is larger than the limit"),
            (
                "415",
                "The body is not declared as JSON (application/json; a mutation also application/json-patch+json)",
            ),
            (
                "422",
                "Well-formed but invalid: unknown or read-only fields, bad values, null for a field that cannot be cleared",
            ),
            ("500", "Internal error; no details are given"),
            ("503", "Overloaded or a dependency is down; retry"),
        ]
        .into_iter()
        .map(|(status, description)| (status.to_owned(), error_response(status, description)))
        .collect()
    }
}

fn error_response(status: &str, description: &str) -> RefOr<Response> {
    let body = RefOr::Ref(utoipa::openapi::Ref::from_schema_name(ErrorBody::name()));
    let content = ContentBuilder::new().schema(Some(body)).build();
    let response = ResponseBuilder::new()
        .description(description)
        .content("application/json", content);
    let response = if status == "401" {
        let mut challenge = Header::default();
        challenge.description = Some(
            "`Bearer realm=\"switchyard\"`, with `error=\"invalid_token\"` when a token was sent but refused (RFC 6750 §3)".to_owned(),
        );
        response.header("WWW-Authenticate", challenge)
    } else {
        response
    };
    response.build().into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_reference_resolves() {
        let spec = serde_json::to_value(crate::openapi()).unwrap();
        let schemas = spec["components"]["schemas"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let text = spec.to_string();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &reference[..reference.find('"').unwrap()];
            assert!(
                schemas.contains_key(name),
                "unresolvable reference to {name}"
            );
        }
    }
}
