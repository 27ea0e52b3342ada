//! `sqlx::migrate!` and `#[sqlx::test(migrations = ...)]` embed `../migrations` at
//! compile time; stable Rust cannot tell cargo about that directory, so this does:
//! a new or edited migration rebuilds the binary and the tests.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
