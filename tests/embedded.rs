//! The embedded PostgreSQL cluster: created, started, reached and stopped from a path with
//! characters that need quoting, with a socket only its owner can reach.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;

use fordeler::embedded::Cluster;

#[tokio::test]
async fn a_cluster_in_a_path_with_spaces_starts_is_private_and_stops() {
    let base = std::env::temp_dir().join(format!(
        "fordeler embedded test+{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&base).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cluster = Cluster::new(&base.join("pg")).unwrap();

    cluster.start().unwrap();
    cluster.start().unwrap(); // idempotent: reuses the running cluster
    assert!(cluster.is_running());
    let pool = fordeler::store::connect(&cluster.url(), 1).await.unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(one, 1);
    let permissions: String = sqlx::query_scalar("SHOW unix_socket_permissions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(permissions, "0700");
    pool.close().await;
    let socket_dir_mode = std::fs::metadata(&cluster.socket_dir)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(
        socket_dir_mode, 0o700,
        "only the owner (and root) can reach the socket"
    );

    cluster.stop().unwrap();
    assert!(!cluster.is_running());
    cluster.start().unwrap(); // restarts the existing cluster, no second initdb
    assert!(cluster.is_running());
    cluster.stop().unwrap();
    std::fs::remove_dir_all(&base).unwrap();
}
