//! The token-signing secret: `auth.secret` when configured, otherwise the
//! quick-start secret kept in `auth.secret_file`.
//!
//! `switchyard up` creates that file on its first run (a fresh random secret, the
//! file `0600` in a `0700` directory) and reuses it afterwards, so tokens survive
//! restarts and `switchyard token` on the same checkout signs with the same secret.
//! A configured secret always wins and is never written or printed.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crate::config::Config;

/// Where the secret in use came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// `auth.secret` (a file or `SWITCHYARD_AUTH__SECRET`).
    Configured,
    /// `auth.secret_file`, read as it was.
    File,
    /// `auth.secret_file`, created just now.
    Created,
}

/// Why no secret could be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "auth.secret is not set (SWITCHYARD_AUTH__SECRET) and {0} does not exist; \
         run `switchyard up` once to create it, or configure a secret of at least 32 characters \
         shared by every API process"
    )]
    Missing(String),
    #[error("auth.secret_file {path}: {problem}")]
    Unusable { path: String, problem: String },
}

/// Fills `config.auth.secret` from the file when it is unset. With `create`, a
/// missing file is created with a new secret (what `up` does); without it, a missing
/// file is [`SecretError::Missing`].
pub fn resolve(config: &mut Config, create: bool) -> Result<SecretSource, SecretError> {
    if config.auth.secret.is_some() {
        return Ok(SecretSource::Configured);
    }
    let path = config.auth.secret_file.clone();
    let shown = path.display().to_string();
    let unusable = |problem: String| SecretError::Unusable {
        path: shown.clone(),
        problem,
    };
    let (secret, source) = match std::fs::read_to_string(&path) {
        Ok(text) => (text.trim().to_owned(), SecretSource::File),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let secret = new_secret();
            write_owner_only(&path, &secret).map_err(|e| unusable(e.to_string()))?;
            (secret, SecretSource::Created)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SecretError::Missing(shown));
        }
        Err(e) => return Err(unusable(e.to_string())),
    };
    if secret.len() < 32 {
        return Err(unusable("holds fewer than 32 characters".to_owned()));
    }
    config.auth.secret = Some(secret);
    Ok(source)
}

/// 32 random bytes, hex-encoded (64 characters).
fn new_secret() -> String {
    (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// Writes `secret` to `path`, readable by its owner only, in a directory only the
/// owner may enter when it has to be made. Fails rather than overwrite a file that
/// appeared meanwhile.
fn write_owner_only(path: &Path, secret: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{secret}")
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn config_in(dir: &Path) -> Config {
        let mut config = Config::default();
        config.auth.secret_file = dir.join("state/auth-secret");
        config
    }

    #[test]
    fn up_creates_the_secret_once_and_everyone_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let mut reader = config_in(dir.path());
        assert!(matches!(
            resolve(&mut reader, false),
            Err(SecretError::Missing(_))
        ));
        let mut first = config_in(dir.path());
        assert_eq!(resolve(&mut first, true).unwrap(), SecretSource::Created);
        let mut second = config_in(dir.path());
        assert_eq!(resolve(&mut second, true).unwrap(), SecretSource::File);
        assert_eq!(resolve(&mut reader, false).unwrap(), SecretSource::File);
        assert_eq!(first.auth.secret, second.auth.secret);
        assert_eq!(first.auth.secret, reader.auth.secret);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("state/auth-secret")), 0o600);
        assert_eq!(mode(&dir.path().join("state")), 0o700);
    }

    #[test]
    fn a_configured_secret_wins_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config_in(dir.path());
        config.auth.secret = Some("c".repeat(32));
        assert_eq!(
            resolve(&mut config, true).unwrap(),
            SecretSource::Configured
        );
        assert_eq!(config.auth.secret.as_deref(), Some("c".repeat(32).as_str()));
        assert!(!dir.path().join("state").exists());
    }

    #[test]
    fn a_short_secret_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config_in(dir.path());
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        std::fs::write(dir.path().join("state/auth-secret"), "short\n").unwrap();
        let err = resolve(&mut config, true).unwrap_err().to_string();
        assert!(err.contains("fewer than 32 characters"), "{err}");
    }
}
