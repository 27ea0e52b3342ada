//! No secret in a repo's remote URL is stored or shown: a remote with a password, an
//! HTTP token or a query string is refused with a 422 that does not repeat it, on
//! register and on edit; lookups by such a URL find the clean remote without echoing
//! it; and remotes stored with credentials before they were refused lose them on
//! upgrade, in the repo and in its audit trail.

use crate::harness;

use harness::{TestFleet, client_with, token};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use switchyard_api::auth::Role;

const SECRET: &str = "s3cr3t-T0KEN";

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

#[sqlx::test(migrations = "../migrations")]
async fn remotes_with_credentials_are_refused_without_repeating_them(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    for (remote, why) in [
        // The issue's input.
        (
            format!("https://deploy-bot:{SECRET}@github.com/acme/creds.git"),
            "a password",
        ),
        (
            format!("https://{SECRET}@github.com/acme/creds.git"),
            "token",
        ),
        (
            format!("ssh://git:{SECRET}@github.com/acme/creds.git"),
            "a password",
        ),
        (
            format!("deploy:{SECRET}@github.com:acme/creds.git"),
            "a password",
        ),
        (
            format!("https://github.com/acme/creds.git?private_token={SECRET}"),
            "query",
        ),
    ] {
        let (status, body) = fleet
            .post(
                "/repos",
                json!({"slug": "creds", "name": "Creds", "remote_url": remote}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{remote}: {body}");
        assert!(message(&body).contains(why), "{remote}: {body}");
        assert!(
            message(&body).contains("must not carry credentials"),
            "{body}"
        );
        assert!(!body.to_string().contains(SECRET), "echoed: {body}");
    }
    let (status, _) = fleet.get("/repos/creds").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");

    // The clean remote registers; an SSH user name is not a secret.
    let (status, body) = fleet
        .post(
            "/repos",
            json!({"slug": "creds", "name": "Creds", "remote_url": "https://github.com/acme/creds.git"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = fleet
        .post(
            "/repos",
            json!({"slug": "ssh", "name": "SSH", "remote_url": "git@github.com:acme/ssh.git"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Editing one in is refused the same way, and changes nothing.
    let remote = format!("https://deploy-bot:{SECRET}@github.com/acme/creds.git");
    let (status, body) = fleet
        .patch("/repos/creds", json!({"remote_url": remote}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(!body.to_string().contains(SECRET), "echoed: {body}");

    // Lookups compare the remote without its credentials, and never echo them.
    let url = fleet.url(&format!("/repos/by-remote?url={remote}"));
    let (status, found) = harness::read(fleet.http.get(url).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["remote_url"], "https://github.com/acme/creds.git");
    let missing = format!("https://bot:{SECRET}@github.com/acme/none.git");
    let url = fleet.url(&format!("/repos/by-remote?url={missing}"));
    let (status, body) = harness::read(fleet.http.get(url).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!body.to_string().contains(SECRET), "echoed: {body}");

    let stored: i64 = sqlx::query_scalar!(
        r#"select (select count(*) from repos where remote_url like '%' || $1 || '%')
              + (select count(*) from audit_log where detail::text like '%' || $1 || '%') as "stored!""#,
        SECRET,
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stored, 0);
    fleet.stop().await;
}

#[sqlx::test(migrations = false)]
async fn credentials_stored_before_the_upgrade_are_removed_by_it(pool: PgPool) {
    // The schema as it was (every migration before the one that removes them), with repos
    // registered, and audited, with credentials.
    let earlier = tempfile::tempdir().unwrap();
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut files: Vec<_> = std::fs::read_dir(&all)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    for file in files
        .iter()
        .take_while(|f| !f.to_string_lossy().contains("remote_credentials"))
    {
        std::fs::copy(file, earlier.path().join(file.file_name().unwrap())).unwrap();
    }
    sqlx::migrate::Migrator::new(earlier.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    // Keys as the earlier version computed them: a query string stayed in the key.
    for (slug, remote, key) in [
        (
            "creds",
            format!("https://deploy-bot:{SECRET}@github.com/acme/creds.git"),
            "github.com/acme/creds".to_owned(),
        ),
        (
            "token",
            format!("https://{SECRET}@gitlab.com/acme/token.git?x={SECRET}"),
            format!("gitlab.com/acme/token.git?x={SECRET}"),
        ),
        (
            "scp",
            format!("deploy:{SECRET}@github.com:acme/scp.git"),
            format!("deploy/{SECRET}@github.com:acme/scp"),
        ),
        (
            "ssh",
            "ssh://git@github.com/acme/ssh.git".to_owned(),
            "github.com/acme/ssh".to_owned(),
        ),
    ] {
        sqlx::query!(
            "insert into repos (slug, name, remote_url, remote_key) values ($1, $1, $2, $3)",
            slug,
            &remote,
            &key,
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query!(
            "insert into audit_log (entity, entity_key, action, actor, detail)
             values ('repo', $1, 'registered', 't', jsonb_build_object('slug', $1::text, 'remote_url', $2::text))",
            slug,
            &remote,
        )
        .execute(&pool)
        .await
        .unwrap();
    }

    switchyard::MIGRATOR.run(&pool).await.unwrap();
    let fleet = TestFleet::up(&pool).await;
    let viewer = client_with(&token(&fleet.config, Role::Viewer));
    for path in [
        "/repos",
        "/repos/creds",
        "/repos/creds/dispatch",
        "/repos/token",
        "/repos/scp",
    ] {
        let response = viewer.get(fleet.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let body = response.text().await.unwrap();
        assert!(!body.contains(SECRET), "{path} shows the secret: {body}");
    }
    // Found by their clean remotes, and no secret is left in any column.
    for (remote, slug) in [
        ("https://gitlab.com/acme/token.git", "token"),
        ("git@github.com:acme/scp.git", "scp"),
        ("https://github.com/acme/creds", "creds"),
    ] {
        let url = fleet.url(&format!("/repos/by-remote?url={remote}"));
        let (status, found) = harness::read(viewer.get(url).send().await.unwrap()).await;
        assert_eq!(
            (status, &found["slug"]),
            (StatusCode::OK, &json!(slug)),
            "{remote}"
        );
    }
    let leaked: i64 = sqlx::query_scalar!(
        r#"select count(*) as "count!" from repos where (repos.*)::text like '%' || $1 || '%'"#,
        SECRET,
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(leaked, 0);
    let remotes: Vec<(String, String)> = sqlx::query!(
        r#"select r.remote_url as "remote_url!", a.detail->>'remote_url' as "audited!" from repos r
         join audit_log a on a.entity_key = r.slug order by r.slug"#,
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .map(|row| (row.remote_url, row.audited))
    .collect();
    let expected = [
        "https://github.com/acme/creds.git",
        "github.com:acme/scp.git",
        "ssh://git@github.com/acme/ssh.git",
        "https://gitlab.com/acme/token.git",
    ];
    for ((repo, audit), expected) in remotes.iter().zip(expected) {
        assert_eq!((repo.as_str(), audit.as_str()), (expected, expected));
    }
    fleet.stop().await;
}
