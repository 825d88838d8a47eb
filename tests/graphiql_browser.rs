//! GraphiQL in a real browser: the server serves the page with local assets (an npm install by
//! `scripts/graphiql-assets.sh`), and headless Chromium, driven by `tests/browser/graphiql.mjs`,
//! runs the default query and sees BBR's events. Needs `node` and Chromium
//! (`scripts/install-deps.sh` installs both) and the npm registry on first run.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::node::{chromium, require_node_and_chromium, run};
use common::{TestDb, TestServer, bygning, uuid};
use fordeler::graphql::Limits;
use fordeler::http::HttpConfig;
use tokio::process::Command;

/// The node_modules directory with GraphiQL, React and playwright-core, installed on demand.
async fn graphiql_assets() -> PathBuf {
    let (ok, out, err) = run(
        &mut Command::new("scripts/graphiql-assets.sh"),
        Duration::from_secs(600),
    )
    .await;
    assert!(ok, "scripts/graphiql-assets.sh failed:\n{out}{err}");
    let dir = PathBuf::from(out.lines().last().unwrap_or_default().trim());
    assert!(
        dir.join("graphiql/graphiql.min.js").is_file(),
        "scripts/graphiql-assets.sh printed no assets directory:\n{out}{err}"
    );
    dir
}

/// A database with a few BBR buildings, so the default query has events to show.
async fn db_with_buildings() -> TestDb {
    let db = TestDb::new().await;
    let rows = [
        bygning("b1", &uuid(1), "0101"),
        bygning("b2", &uuid(2), "0147"),
        bygning("b3", &uuid(3), "0751"),
    ];
    db.import(&db.package("BBR", 1, &rows)).await.unwrap();
    db
}

#[tokio::test]
async fn a_browser_asking_for_html_gets_graphiql() {
    let db = TestDb::new().await;
    let server = TestServer::start(&db).await;
    let response = server
        .client
        .get(format!("{}/graphql", server.base))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let body = response.text().await.unwrap();
    assert!(body.contains("<!doctype html>"), "{body}");
    assert!(body.contains("GraphiQL"), "{body}");
    assert!(body.contains("graphiql@3.8.3/graphiql.min.js"), "{body}");
    assert!(body.contains("BBR_Events"), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn graphiql_runs_the_default_query_in_headless_chromium() {
    require_node_and_chromium().await;
    let assets = graphiql_assets().await;
    let db = db_with_buildings().await;
    let config = HttpConfig {
        graphiql_assets: Some(assets.clone()),
        ..HttpConfig::default()
    };
    let server = TestServer::start_with(&db, Limits::default(), config).await;

    // The page points at the local assets, and the server serves them.
    let page = server
        .client
        .get(format!("{}/graphql", server.base))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for asset in [
        "/graphql/assets/react/umd/react.production.min.js",
        "/graphql/assets/react-dom/umd/react-dom.production.min.js",
        "/graphql/assets/graphiql/graphiql.min.js",
        "/graphql/assets/graphiql/graphiql.min.css",
    ] {
        assert!(page.contains(asset), "the page lacks {asset}:\n{page}");
        let response = server
            .client
            .get(format!("{}{asset}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET {asset}");
    }
    assert!(!page.contains("unpkg.com"), "{page}");

    let (ok, out, err) = run(
        Command::new("node")
            .arg("tests/browser/graphiql.mjs")
            .arg(&server.base)
            .arg(&assets)
            .env("CHROMIUM", chromium()),
        Duration::from_secs(120),
    )
    .await;
    assert!(ok, "the GraphiQL browser test failed:\n{out}{err}");
    assert!(out.contains("PASSED"), "{out}{err}");
    println!("{out}");
    server.stop().await;
}
