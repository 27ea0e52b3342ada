//! Starts the stand-in on port 0 and checks what a Gitea client sees: shapes,
//! pagination, auth, errors, outages, holds and signed webhooks.

use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::{GiteaStandin, signature};

const TOKEN: &str = "test-token";

async fn get_as(
    gitea: &GiteaStandin,
    path: &str,
    auth: Option<&str>,
) -> (StatusCode, HeaderMap, Value) {
    let headers: Vec<(String, String)> = auth
        .map(|a| ("Authorization".to_owned(), a.to_owned()))
        .into_iter()
        .collect();
    let url = format!("{}/api/v1{path}", gitea.url());
    let (status, headers, body) = crate::webhook::exchange(Method::GET, &url, &headers, Vec::new())
        .await
        .unwrap();
    (
        status,
        headers,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

async fn get(gitea: &GiteaStandin, path: &str) -> (StatusCode, HeaderMap, Value) {
    get_as(gitea, path, Some(&format!("token {TOKEN}"))).await
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).map_or("", |v| v.to_str().unwrap())
}

#[tokio::test]
async fn contents_serve_a_file_and_a_directory_like_gitea() {
    let gitea = GiteaStandin::start(TOKEN).await;
    gitea.create_repo("Team/Meta");
    let sha = gitea.put_file("Team/Meta", "main", "d/hello.txt", "hello\n");
    gitea.put_file("Team/Meta", "main", "d/e/x.md", "x");
    gitea.put_file("Team/Meta", "main", "d-y", "y");
    assert_eq!(
        sha, "ce013625030ba8dba906f756967f9e9ca394464a",
        "git's blob sha"
    );

    let (status, _, file) = get(&gitea, "/repos/team/META/contents/d/hello.txt").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (file["type"].as_str(), file["sha"].as_str()),
        (Some("file"), Some(sha.as_str()))
    );
    assert_eq!(
        (file["name"].as_str(), file["path"].as_str()),
        (Some("hello.txt"), Some("d/hello.txt"))
    );
    assert_eq!(
        (file["size"].as_u64(), file["encoding"].as_str()),
        (Some(6), Some("base64"))
    );
    let content = STANDARD.decode(file["content"].as_str().unwrap()).unwrap();
    assert_eq!(content, b"hello\n");
    assert!(file["target"].is_null() && file["submodule_git_url"].is_null());
    assert_eq!(file["_links"]["self"], file["url"]);
    assert!(
        file["url"]
            .as_str()
            .unwrap()
            .ends_with("/api/v1/repos/Team/Meta/contents/d/hello.txt?ref=main")
    );

    // Git orders "d-y" before "d/", so a wrong tree order shows in d's sha.
    let (_, _, root) = get(&gitea, "/repos/Team/Meta/contents?ref=main").await;
    let names: Vec<_> = root
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].clone(), e["type"].clone()))
        .collect();
    assert_eq!(
        names,
        [("d".into(), "dir".into()), ("d-y".into(), "file".into())]
    );
    assert_eq!(
        root[0]["sha"], "32337c8bbe0e57a25bd6b2d3b42d28ff15018f64",
        "git's tree sha"
    );
    let (_, _, dir) = get(&gitea, "/repos/Team/Meta/contents/d").await;
    let dir = dir.as_array().unwrap();
    assert_eq!(dir.len(), 2);
    assert_eq!(
        (dir[0]["name"].as_str(), dir[0]["type"].as_str()),
        (Some("e"), Some("dir"))
    );
    assert_eq!(dir[0]["sha"], "0fd139a960a00c7468343e1532d703a9b77c5334");
    assert_eq!(
        (dir[1]["name"].as_str(), dir[1]["sha"].as_str()),
        (Some("hello.txt"), Some(sha.as_str()))
    );
    assert!(dir[1]["content"].is_null() && dir[1]["encoding"].is_null());
}

#[tokio::test]
async fn refs_paths_and_repos_that_do_not_exist_get_gitea_404s() {
    let gitea = GiteaStandin::start(TOKEN).await;
    gitea.create_repo("team/rfc-a");
    gitea.put_file("team/rfc-a", "propose/x", "RFC.md", "draft");

    let (status, _, body) = get(&gitea, "/repos/team/rfc-a/contents/RFC.md?ref=propose/x").await;
    assert_eq!(
        (status, body["type"].as_str()),
        (StatusCode::OK, Some("file"))
    );
    let (status, _, body) = get(&gitea, "/repos/team/rfc-a/contents/RFC.md").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body["message"],
        "object does not exist [id: , rel_path: RFC.md]"
    );
    assert!(body["url"].as_str().unwrap().ends_with("/api/swagger"));
    let (status, _, body) = get(&gitea, "/repos/team/rfc-a/contents/RFC.md?ref=nope").await;
    assert_eq!(
        (status, body["message"].as_str()),
        (
            StatusCode::NOT_FOUND,
            Some("object does not exist [id: nope, rel_path: ]")
        )
    );
    let (status, _, body) = get(&gitea, "/repos/team/missing/branches").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["message"].is_string() && body["url"].is_string());
    let (status, _, _) = get(&gitea, "/repos/team/rfc-a/unknown").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn branches_paginate_with_total_count_link_and_the_limit_cap() {
    let gitea = GiteaStandin::start(TOKEN).await;
    gitea.create_repo("team/rfc-a");
    for i in 0..75 {
        gitea.push_branch("team/rfc-a", &format!("b{i:02}"));
    }
    let (status, headers, page) = get(&gitea, "/repos/team/rfc-a/branches?limit=100").await;
    assert_eq!(
        (status, page.as_array().unwrap().len()),
        (StatusCode::OK, 50),
        "limit is capped at 50"
    );
    assert_eq!(header(&headers, "x-total-count"), "76");
    let base = gitea.url();
    let next = format!("<{base}/api/v1/repos/team/rfc-a/branches?limit=100&page=2>; rel=\"next\"");
    let last = format!("<{base}/api/v1/repos/team/rfc-a/branches?limit=100&page=2>; rel=\"last\"");
    assert_eq!(header(&headers, "link"), format!("{next},{last}"));
    assert_eq!(
        header(&headers, "access-control-expose-headers"),
        "Link, X-Total-Count"
    );

    let (_, headers, page) = get(&gitea, "/repos/team/rfc-a/branches?page=2&limit=50").await;
    let page = page.as_array().unwrap();
    assert_eq!(page.len(), 26);
    assert_eq!(page.last().unwrap()["name"], "main", "sorted by name");
    assert!(header(&headers, "link").contains("page=1>; rel=\"first\""));
    assert!(header(&headers, "link").contains("page=1>; rel=\"prev\""));
    assert!(!header(&headers, "link").contains("rel=\"next\""));

    let (_, headers, page) = get(&gitea, "/repos/team/rfc-a/branches?page=0").await;
    assert_eq!(page.as_array().unwrap().len(), 30, "default limit");
    assert!(header(&headers, "link").contains("page=3>; rel=\"last\""));
    let b00 = &page[0];
    assert_eq!(
        b00["commit"]["id"].as_str(),
        gitea.head("team/rfc-a", "b00").as_deref()
    );
    assert!(b00["commit"]["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        (b00["protected"].as_bool(), b00["user_can_push"].as_bool()),
        (Some(false), Some(true))
    );
}

#[tokio::test]
async fn pulls_filter_by_state_newest_first() {
    let gitea = GiteaStandin::start(TOKEN).await;
    gitea.create_repo("team/meta");
    gitea.put_file("team/meta", "propose/a", "rfcs/a.md", "a");
    gitea.push_branch("team/meta", "claim/b");
    gitea.push_branch("team/meta", "edit/c/1");
    assert_eq!(
        gitea.open_pull("team/meta", "propose/a", "Propose a", "body", "alice"),
        1
    );
    assert_eq!(
        gitea.open_pull("team/meta", "claim/b", "Claim b", "", "bot"),
        2
    );
    assert_eq!(
        gitea.open_pull("team/meta", "edit/c/1", "Edit c", "", "carol"),
        3
    );
    gitea.merge_pull("team/meta", 1);
    gitea.close_pull("team/meta", 2);

    let (_, _, open) = get(&gitea, "/repos/team/meta/pulls").await;
    assert_eq!(open.as_array().unwrap().len(), 1);
    assert_eq!(
        (open[0]["number"].as_i64(), open[0]["state"].as_str()),
        (Some(3), Some("open"))
    );
    assert_eq!(open[0]["head"]["ref"], "edit/c/1");
    assert_eq!(open[0]["user"]["login"], "carol");
    let (_, headers, all) = get(&gitea, "/repos/team/meta/pulls?state=all").await;
    let numbers: Vec<_> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["number"].as_i64().unwrap())
        .collect();
    assert_eq!(
        (numbers, header(&headers, "x-total-count")),
        (vec![3, 2, 1], "3")
    );
    let (_, _, closed) = get(&gitea, "/repos/team/meta/pulls?state=closed").await;
    let (merged, plain) = (&closed[1], &closed[0]);
    assert_eq!(
        (merged["merged"].as_bool(), plain["merged"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(
        merged["merge_commit_sha"].as_str(),
        gitea.head("team/meta", "main").as_deref()
    );
    assert!(plain["merged_at"].is_null() && plain["closed_at"].is_string());

    let (_, _, merged_file) = get(&gitea, "/repos/team/meta/contents/rfcs/a.md").await;
    assert_eq!(
        merged_file["type"], "file",
        "merging brings the head's files to main"
    );
}

#[tokio::test]
async fn requests_without_the_token_get_401() {
    let gitea = GiteaStandin::start(TOKEN).await;
    gitea.create_repo("team/meta");
    let path = "/repos/team/meta/branches";
    let (status, _, body) = get_as(&gitea, path, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["message"].is_string() && body["url"].is_string());
    assert_eq!(
        get_as(&gitea, path, Some("token wrong")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_as(&gitea, path, Some(&format!("Bearer {TOKEN}")))
            .await
            .0,
        StatusCode::OK
    );
    let (status, _, version) = get_as(&gitea, "/version", None).await;
    assert_eq!(
        (status, version["version"].as_str()),
        (StatusCode::OK, Some("1.22.6"))
    );
}

#[tokio::test]
async fn down_and_queued_failures_answer_every_request_and_count_it() {
    let gitea = GiteaStandin::start(TOKEN).await;
    gitea.create_repo("team/meta");
    let path = "/repos/team/meta/branches";
    gitea.set_down(true);
    assert_eq!(get(&gitea, path).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        get_as(&gitea, "/nowhere", None).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    gitea.set_down(false);
    gitea.fail_next(2, 429);
    for _ in 0..2 {
        let (status, headers, _) = get(&gitea, path).await;
        assert_eq!(
            (status, header(&headers, "retry-after")),
            (StatusCode::TOO_MANY_REQUESTS, "1")
        );
    }
    gitea.fail_next(1, 502);
    assert_eq!(get(&gitea, path).await.0, StatusCode::BAD_GATEWAY);
    assert_eq!(get(&gitea, path).await.0, StatusCode::OK);
    assert_eq!(gitea.calls(), 6);
    gitea.reset_calls();
    assert_eq!(gitea.calls(), 0);
}

#[tokio::test]
async fn a_held_request_waits_and_then_reads_the_state_as_of_its_release() {
    let gitea = GiteaStandin::start(TOKEN).await;
    gitea.create_repo("team/meta");
    gitea.put_file("team/meta", "main", "rfcs/a.md", "old");
    let hold = gitea.hold();
    let reader = tokio::spawn({
        let gitea = gitea.clone();
        async move { get(&gitea, "/repos/team/meta/contents/rfcs/a.md").await }
    });
    for _ in 0..500 {
        if gitea.held() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!((gitea.held(), gitea.calls()), (1, 0), "waiting, unanswered");
    let new_sha = gitea.put_file("team/meta", "main", "rfcs/a.md", "new");
    hold.release();
    let (status, _, file) = reader.await.unwrap();
    assert_eq!(
        (status, file["sha"].as_str()),
        (StatusCode::OK, Some(new_sha.as_str()))
    );
    assert_eq!((gitea.held(), gitea.calls()), (0, 1));
}

#[test]
fn signature_is_hex_hmac_sha256() {
    // RFC 4231, test case 2.
    let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    assert_eq!(signature("Jefe", b"what do ya want for nothing?"), expected);
}

#[tokio::test]
async fn webhooks_carry_gitea_headers_signed_over_the_exact_body() {
    let gitea = GiteaStandin::start(TOKEN).await;
    gitea.create_repo("team/meta");
    let after = gitea.put_file("team/meta", "main", "rfcs/a.md", "a");
    let push = gitea.webhook("push", "team/meta", "s3cret");
    let signed = signature("s3cret", &push.body);
    assert_eq!(push.header("x-gitea-signature"), Some(signed.as_str()));
    assert_eq!(push.header("X-Gogs-Signature"), Some(signed.as_str()));
    assert_eq!(
        push.header("X-Hub-Signature-256"),
        Some(format!("sha256={signed}").as_str())
    );
    assert_eq!(push.header("X-Gitea-Delivery"), Some(push.id.as_str()));
    assert_eq!(push.header("X-GitHub-Event"), Some("push"));
    let body: Value = serde_json::from_slice(&push.body).unwrap();
    assert_eq!(
        (
            body["ref"].as_str(),
            body["head_commit"]["added"][0].as_str()
        ),
        (Some("refs/heads/main"), Some("rfcs/a.md"))
    );
    assert_eq!(
        body["after"].as_str(),
        gitea.head("team/meta", "main").as_deref()
    );
    assert_ne!(
        after, body["after"],
        "after is a commit sha, not the blob's"
    );
    assert_eq!(body["repository"]["full_name"], "team/meta");

    gitea.push_branch("team/meta", "propose/b");
    gitea.open_pull("team/meta", "propose/b", "Propose b", "", "alice");
    let pull: Value =
        serde_json::from_slice(&gitea.webhook("pull_request", "team/meta", "s").body).unwrap();
    assert_eq!(
        (pull["action"].as_str(), pull["number"].as_i64()),
        (Some("opened"), Some(1))
    );
    let create: Value =
        serde_json::from_slice(&gitea.webhook("create", "team/meta", "s").body).unwrap();
    assert_eq!(
        (create["ref"].as_str(), create["ref_type"].as_str()),
        (Some("propose/b"), Some("branch"))
    );
    assert_ne!(
        gitea.webhook("push", "team/meta", "s").id,
        push.id,
        "a fresh delivery id each time"
    );
}

#[tokio::test]
async fn a_delivery_posts_its_body_and_headers() {
    use axum::routing::post;
    let receiver = axum::Router::new().route(
        "/hook",
        post(|headers: HeaderMap, body: axum::body::Bytes| async move {
            let given = header(&headers, "x-gitea-signature").to_owned();
            let event = header(&headers, "x-gitea-event").to_owned();
            let valid = given == signature("s3cret", &body);
            (
                if valid {
                    StatusCode::ACCEPTED
                } else {
                    StatusCode::UNAUTHORIZED
                },
                event,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let gitea = GiteaStandin::start(TOKEN).await;
    gitea.create_repo("team/meta");
    assert_eq!(
        gitea
            .webhook("push", "team/meta", "s3cret")
            .send(&url)
            .await,
        (202, "push".to_owned())
    );
    assert_eq!(
        gitea
            .webhook("push", "team/meta", "wrong")
            .send(&url)
            .await
            .0,
        401
    );
    assert_eq!(
        gitea
            .webhook("push", "team/meta", "s")
            .send("https://127.0.0.1:1/hook")
            .await
            .0,
        0
    );
}
