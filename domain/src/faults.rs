//! Which database errors are an outage and which are not.
//!
//! The API answers an outage with 503 and `Retry-After` (the client retries, it is us),
//! and a worker retries it with backoff. Any other error will fail the same way again:
//! the API answers 500 (a bug), and a worker gives the work up with a reason instead of
//! retrying it forever.

/// Whether `error` means the database could not be reached or could not serve us now:
/// a connection lost, refused or timed out, the pool exhausted or closed, the server
/// shutting down or out of resources, a new connection refused (the database not
/// accepting connections, gone, or the credentials no longer valid), a statement or lock wait cut short, or a
/// transaction rolled back by a serialization conflict or deadlock. Retrying later may
/// succeed. SQLSTATE classes are from the PostgreSQL manual, appendix A.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        // A connection cut mid-message surfaces as a protocol error.
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|code| is_transient_state(&code)),
        _ => false,
    }
}

/// Whether `error` is a statement cancelled by `statement_timeout` (57014). The API
/// counts it as an outage (a 503: the database is too slow right now), but a worker
/// must not: the same work would run past the same timeout again, so retrying it is
/// what the work gives up on instead.
pub fn is_statement_timeout(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.code().as_deref() == Some("57014"))
}

fn is_transient_state(code: &str) -> bool {
    let class = code.get(..2).unwrap_or_default();
    // 08 connection exception, 53 insufficient resources, 57 operator intervention
    // (admin or crash shutdown, cannot connect now, query canceled by a timeout),
    // 58 system error; and what only a new connection meets: 28 invalid authorization
    // (credentials rotated under a running process).
    matches!(class, "08" | "28" | "53" | "57" | "58")
        || matches!(
            code,
            // serialization failure, statement completion unknown, deadlock detected
            "40001" | "40003" | "40P01"
            // lock not available (lock_timeout)
            | "55P03"
            // idle-in-transaction or transaction timeout: the session was ended
            | "25P03" | "25P04"
            // at connect: the database is not accepting connections (`allow_connections
            // false`, being dropped or renamed), or is gone
            | "55000" | "3D000"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_level_failures_are_transient() {
        assert!(is_transient(&sqlx::Error::PoolTimedOut));
        assert!(is_transient(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset
        ))));
        for code in [
            "08006", "57P01", "53300", "40001", "55P03", "57014", "55000", "3D000", "28P01",
        ] {
            assert!(is_transient_state(code), "{code}");
        }
        for code in ["22P02", "23505", "54001", "42P01", "XX000", "40002"] {
            assert!(!is_transient_state(code), "{code}");
        }
        assert!(!is_transient(&sqlx::Error::RowNotFound));
    }
}
