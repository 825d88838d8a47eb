//! `RegisterImportStatus` tells a running import while it runs, and nothing once it is done.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{TestDb, TestServer};
use fordeler::generate::{GenerateOptions, generate};
use serde_json::json;

#[tokio::test]
async fn register_import_status_shows_the_package_being_imported_while_it_runs() {
    let db = TestDb::new().await;
    let bbr = db.registry.get("BBR").unwrap().clone();
    let options = GenerateOptions {
        packages: 1,
        rows: 50_000,
        seed: 1,
        start_seq: 1,
        out: db.dir.path().to_path_buf(),
        gzip: false,
    };
    let file = generate(&bbr, &options).unwrap().remove(0);
    let server = TestServer::start(&db).await;
    let query = "{ RegisterImportStatus(register: \"BBR\") { importRunning importingSequenceNumber importingSince lastSequenceNumber } }";

    let import = {
        let url = db.url.clone();
        let registry = db.registry.clone();
        tokio::spawn(async move {
            let mut conn = fordeler::import::connect(&url).await.unwrap();
            fordeler::import::import_package(&mut conn, &registry, &file, &fordeler::import::Quiet)
                .await
                .unwrap()
        })
    };
    let mut seen_running = None;
    while !import.is_finished() {
        let status = server.data(query, json!({})).await["RegisterImportStatus"][0].clone();
        if status["importRunning"] == true {
            seen_running = Some(status);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    import.await.unwrap();

    let running = seen_running.expect("the import was seen running");
    assert_eq!(running["importingSequenceNumber"], 1);
    assert_eq!(running["lastSequenceNumber"], 0);
    assert!(running["importingSince"].is_string());
    let done = server.data(query, json!({})).await["RegisterImportStatus"][0].clone();
    assert_eq!(
        done,
        json!({"importRunning": false, "importingSequenceNumber": null, "importingSince": null, "lastSequenceNumber": 1})
    );
    server.stop().await;
}
