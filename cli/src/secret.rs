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
        "auth.secret is not set (SWITCHYARD_AUTH__SECRET) and {0} does not exist \
         (auth.secret_file is relative to the working directory: run this from the directory \
         `switchyard up` ran in, usually the checkout's root, or set SWITCHYARD_AUTH__SECRET_FILE \
         to that file), or configure a secret of at least 32 characters shared by every API process"
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
    // Shown whole: a relative path says little when run from the wrong directory.
    let shown = std::path::absolute(&path)
        .unwrap_or_else(|_| path.clone())
        .display()
        .to_string();
    let unusable = |problem: String| SecretError::Unusable {
        path: shown.clone(),
        problem,
    };
    let (secret, source) = match read_owner_only(&path) {
        Ok(text) => (text, SecretSource::File),
        Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let secret = new_secret();
            match write_owner_only(&path, &secret) {
                Ok(()) => (secret, SecretSource::Created),
                // Another `up` created it meanwhile: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = read_owner_only(&path).map_err(|e| unusable(e.to_string()))?;
                    (text, SecretSource::File)
                }
                Err(e) => return Err(unusable(e.to_string())),
            }
        }
        Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
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

/// Why the secret file could not be read.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("{0}")]
    Io(std::io::Error),
    /// Group or others may read it: a secret anyone on the machine can use.
    #[error("may be read by others (mode {0:04o}); make it owner-only: chmod 600")]
    Exposed(u32),
}

/// The secret in `path`, trimmed, refused when group or others may read it (as
/// ssh refuses a private key).
fn read_owner_only(path: &Path) -> Result<String, ReadError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(ReadError::Io)?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(ReadError::Exposed(mode));
    }
    let text = std::fs::read_to_string(path).map_err(ReadError::Io)?;
    Ok(text.trim().to_owned())
}

/// Writes `secret` to `path`, readable by its owner only, in a directory only the
/// owner may enter when it has to be made. The file appears whole or not at all: it
/// is written under a temporary name and linked into place, which fails with
/// `AlreadyExists` rather than overwrite a file that appeared meanwhile.
fn write_owner_only(path: &Path, secret: &str) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        writeln!(file, "{secret}")?;
        file.sync_all()?;
        std::fs::hard_link(&temporary, path)
    })();
    let _ = std::fs::remove_file(&temporary);
    written
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
    fn a_secret_file_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut config = config_in(dir.path());
        resolve(&mut config, true).unwrap();
        let file = dir.path().join("state/auth-secret");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut again = config_in(dir.path());
        let err = resolve(&mut again, true).unwrap_err().to_string();
        assert!(err.contains("may be read by others (mode 0644)"), "{err}");
        assert!(err.contains("chmod 600"), "{err}");
        // Nothing beside the secret is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("state"))
            .unwrap()
            .collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_short_secret_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config_in(dir.path());
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        std::fs::write(dir.path().join("state/auth-secret"), "short\n").unwrap();
        std::fs::set_permissions(
            dir.path().join("state/auth-secret"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let err = resolve(&mut config, true).unwrap_err().to_string();
        assert!(err.contains("fewer than 32 characters"), "{err}");
    }
}
