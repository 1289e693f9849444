#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

//! The harness itself: a cluster starts, survives a restart and a kill, and leaves nothing.

use std::net::TcpStream;

use custos_testpg::TestCluster;

#[test]
fn a_cluster_restarts_after_a_stop_and_a_kill_and_is_removed_when_dropped() {
    let mut cluster = TestCluster::start();
    let port = cluster.port();
    let dir = cluster.dir().to_owned();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    assert!(cluster.url().starts_with("postgres://custos:"));
    let url = cluster.create_database("second");
    assert!(url.ends_with(&format!("127.0.0.1:{port}/second")));

    cluster.stop();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    cluster.restart();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());

    cluster.kill();
    cluster.restart();
    assert_eq!(cluster.port(), port);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());

    drop(cluster);
    assert!(!dir.exists(), "the cluster's directory is removed");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}
