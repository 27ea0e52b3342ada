//! Git remote URLs: their comparable form, and the credentials they must not carry.
//!
//! A remote is either URL-like, `scheme://[userinfo@]host[:port]/path` (RFC 3986), or
//! scp-like, `[user@]host:path` (git's own shorthand). Both spell the same remote in
//! many ways, so they compare by a normalized key.
//!
//! ## Credentials
//! A repo's `remote_url` is shown to every reader, so it must not hold a secret: a
//! password (`user:password@`), a token sent as the user name over HTTP
//! (`https://TOKEN@host/…`, how GitHub and GitLab take tokens), or a query string
//! (`?access_token=…`). Such a remote is refused with a 422 that never repeats it. A
//! bare SSH user (`git@host:…`, `ssh://git@host/…`) is a name, not a secret, and stays.

use crate::error::ApiError;

/// Schemes whose user name is a credential: HTTP servers take tokens there.
const TOKEN_SCHEMES: [&str; 4] = ["http", "https", "ftp", "ftps"];

/// A remote URL split into the parts that matter here.
struct Remote<'a> {
    /// `https`, `ssh`, …; `None` for scp-like.
    scheme: Option<&'a str>,
    /// What precedes `@` in the authority, if anything.
    userinfo: Option<&'a str>,
    /// Host, with its port for URL-like remotes.
    host: &'a str,
    /// Everything after the host, including any query or fragment.
    path: &'a str,
}

impl<'a> Remote<'a> {
    fn parse(url: &'a str) -> Result<Self, ApiError> {
        let not_a_remote = || {
            ApiError::Unprocessable(
                "remote_url is not a git remote: use scheme://host/path or user@host:path"
                    .to_owned(),
            )
        };
        let (head, tail) = url
            .split_once(':')
            .filter(|(head, _)| !head.is_empty() && !head.contains('/'))
            .ok_or_else(not_a_remote)?;
        let (scheme, authority, path) = match tail.strip_prefix("//") {
            Some(rest) => {
                let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                (Some(head), &rest[..end], &rest[end..])
            }
            // scp-like: everything before the first `:` is `[user@]host`.
            None => (None, head, tail),
        };
        // Only the authority carries `user@`; an `@` in the path is part of the path.
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => (Some(userinfo), host),
            None => (None, authority),
        };
        Ok(Self {
            scheme,
            userinfo,
            host,
            path,
        })
    }

    /// Why this remote may not be stored, if it carries a secret.
    fn secret(&self) -> Option<&'static str> {
        let token_scheme = self
            .scheme
            .is_some_and(|s| TOKEN_SCHEMES.iter().any(|t| s.eq_ignore_ascii_case(t)));
        match (self.scheme, self.userinfo) {
            (_, Some(info)) if info.contains(':') => Some("a password (user:password@)"),
            (_, Some(_)) if token_scheme => Some("a user name or token before `@`"),
            _ if self.path.contains(['?', '#']) => Some("a query string or fragment"),
            // `user:password@host:path` reads, scp-like, as host `user`: the secret then
            // shows up as an `@` before the path's first `/`.
            (None, None) if self.path.split('/').next().is_some_and(|p| p.contains('@')) => {
                Some("a password (user:password@)")
            }
            _ => None,
        }
    }

    /// `host/path`, host lowercased, without scheme, user, `.git` or trailing slashes.
    fn key(&self) -> String {
        let path = self.path.trim_start_matches('/').trim_end_matches('/');
        let path = path.strip_suffix(".git").unwrap_or(path);
        format!("{}/{}", self.host.to_lowercase(), path)
    }
}

/// The comparable form of a git remote: `host/path`, host lowercased, without scheme,
/// user, port-less `:` of scp syntax, `.git` or trailing slashes. 422 if `url` is not
/// a remote.
pub fn remote_key(url: &str) -> Result<String, ApiError> {
    Remote::parse(url).map(|remote| remote.key())
}

/// The key of a remote about to be stored as `field`: 422 if it is not a remote, or
/// if it carries credentials (the message says which kind, never the value).
pub fn storable_remote_key(field: &str, url: &str) -> Result<String, ApiError> {
    let remote = Remote::parse(url)?;
    if let Some(secret) = remote.secret() {
        return Err(ApiError::Unprocessable(format!(
            "{field} must not carry credentials, and this one has {secret}: it would be shown to every reader. Register the plain remote (such as https://host/owner/repo.git) and keep credentials in a git credential helper"
        )));
    }
    Ok(remote.key())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_compare_in_every_usual_spelling() {
        let expected = "github.com/acme/billing";
        for url in [
            "https://github.com/acme/billing",
            "https://github.com/acme/billing.git",
            "https://user@GitHub.com/acme/billing/",
            "git@github.com:acme/billing.git",
            "ssh://git@github.com/acme/billing.git",
        ] {
            assert_eq!(remote_key(url).unwrap(), expected, "{url}");
        }
        assert!(remote_key("not a remote").is_err());
        assert_eq!(
            remote_key("https://host/group/@scope/pkg").unwrap(),
            "host/group/@scope/pkg"
        );
    }

    #[test]
    fn credentials_are_refused_and_never_repeated() {
        for (url, kind) in [
            (
                "https://deploy-bot:s3cr3t-T0KEN@github.com/acme/creds.git",
                "password",
            ),
            ("https://ghp_s3cr3tT0KEN@github.com/acme/creds.git", "token"),
            (
                "HTTP://oauth2:s3cr3t@gitlab.example.com/acme/creds",
                "password",
            ),
            ("ssh://git:s3cr3t@github.com/acme/creds.git", "password"),
            ("deploy:s3cr3t@github.com:acme/creds.git", "password"),
            (
                "https://github.com/acme/creds.git?access_token=s3cr3t",
                "query",
            ),
        ] {
            let message = storable_remote_key("remote_url", url)
                .unwrap_err()
                .to_string();
            assert!(message.contains(kind), "{url}: {message}");
            assert!(!message.contains("s3cr3t"), "{url}: {message}");
        }
        for url in [
            "git@github.com:acme/billing.git",
            "ssh://git@github.com/acme/billing.git",
            "https://github.com/acme/billing.git",
            "https://host/group/@scope/pkg",
        ] {
            storable_remote_key("remote_url", url).unwrap();
        }
        let message = remote_key("s3cr3t and no colon").unwrap_err().to_string();
        assert!(!message.contains("s3cr3t"), "{message}");
    }
}
