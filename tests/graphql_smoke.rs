//! The server answers the verbatim Datafordeler events query over real HTTP.
#![allow(clippy::unwrap_used)]

mod common;

use common::{TestDb, TestServer, bygning, uuid};
use serde_json::json;

#[tokio::test]
async fn the_verbatim_datafordeler_events_query_works_as_written() {
    let db = TestDb::new().await;
    let rows = [
        bygning("b1", &uuid(1), "0101"),
        bygning("b2", &uuid(2), "0147"),
    ];
    db.import(&db.package("BBR", 1, &rows)).await.unwrap();
    let server = TestServer::start(&db).await;

    let data = server
        .data(
            r#"query {
  BBR_Events(where: { entityname: { eq: "Bygning" } }) {
    nodes {
      eventid
      entityname
      eventaction
      datafordelerRegisterImportSequenceNumber
      datafordelerOpdateringstid
      fromfailedimport
      object_id
      object_datafordelerRowId
      object_datafordelerRowVersion
      object_registreringfra
      object_registreringtil
      object_status
      object_virkningfra
      object_virkningtil
    }
  }
}"#,
            json!({}),
        )
        .await;

    let nodes = data["BBR_Events"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0]["eventid"], 1);
    assert_eq!(nodes[1]["eventid"], 2);
    assert_eq!(nodes[0]["eventaction"], "i");
    assert_eq!(nodes[0]["object_id"], uuid(1));
    assert_eq!(
        nodes[0]["object_registreringfra"],
        "2026-01-01T00:00:00.000000Z"
    );
    assert_eq!(nodes[0]["object_registreringtil"], serde_json::Value::Null);
    server.stop().await;
}
