//! The conformance suite against a real etcd, plus what only the etcd backend has to get
//! right: key prefixes, outages, and compactions made by other clients.

mod support;

use std::sync::Arc;
use std::time::Duration;

use flotilla_store::{EtcdConfig, EtcdStore, KeyRange, ListOptions, Store, StoreError};
use futures::StreamExt;
use support::etcd::EtcdServer;

/// Every case runs under a prefix, which exercises the keyspace mapping on every path.
async fn fresh() -> (Arc<dyn Store>, EtcdServer) {
    let server = EtcdServer::start().await;
    let store = server.store("/flotilla-conformance").await;
    (Arc::new(store), server)
}

flotilla_store::conformance_tests!(fresh);

#[tokio::test]
async fn prefixes_isolate_stores_sharing_one_etcd() {
    let server = EtcdServer::start().await;
    let a = server.store("/tenant-a").await;
    let b = server.store("/tenant-b").await;
    a.put("/registry/pods/x", "from a".into()).await.unwrap();
    let mut watch = b
        .watch(KeyRange::Prefix("/registry/".into()), None)
        .await
        .unwrap();
    b.put("/registry/pods/x", "from b".into()).await.unwrap();
    let (kv, _) = a.get("/registry/pods/x", None).await.unwrap();
    assert_eq!(kv.unwrap().value, "from a");
    let listed = b
        .list(ListOptions {
            prefix: "/registry/".into(),
            ..ListOptions::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.kvs.len(), 1);
    assert_eq!(listed.kvs[0].value, "from b");
    let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("b's watch sees b's write")
        .unwrap()
        .unwrap();
    assert_eq!(
        (event.kv.key.as_str(), event.kv.value.as_ref()),
        ("/registry/pods/x", b"from b".as_ref())
    );
}

#[tokio::test]
async fn a_compaction_by_another_client_is_discovered() {
    let server = EtcdServer::start().await;
    let ours = server.store("/p").await;
    let theirs = server.store("/p").await;
    let mut revisions = Vec::new();
    for i in 0..20 {
        revisions.push(
            ours.put("/k", format!("{i}").into())
                .await
                .unwrap()
                .mod_revision,
        );
    }
    theirs.compact(revisions[13]).await.unwrap();
    assert_eq!(ours.compacted_revision().await.unwrap(), revisions[13]);
    assert_eq!(
        ours.get("/k", Some(revisions[2])).await,
        Err(StoreError::Compacted {
            requested: revisions[2],
            compacted: revisions[13],
        })
    );
}

#[tokio::test]
async fn an_unreachable_etcd_is_unavailable() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = EtcdConfig {
        endpoints: vec![format!("http://127.0.0.1:{port}")],
        connect_timeout: Duration::from_millis(200),
        request_timeout: Duration::from_secs(2),
        ..EtcdConfig::default()
    };
    match EtcdStore::connect_with(config).await {
        Err(StoreError::Unavailable(_)) => {}
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("connected to a closed port"),
    }
    assert!(matches!(
        EtcdStore::connect(&[], None).await,
        Err(StoreError::InvalidRequest { .. })
    ));
}

#[tokio::test]
async fn requests_and_watches_fail_when_etcd_dies() {
    let mut server = EtcdServer::start().await;
    let config = EtcdConfig {
        endpoints: server.endpoints(),
        connect_timeout: Duration::from_millis(200),
        request_timeout: Duration::from_secs(2),
        ..EtcdConfig::default()
    };
    let store = EtcdStore::connect_with(config).await.unwrap();
    let mut watch = store
        .watch(KeyRange::Prefix("/".into()), None)
        .await
        .unwrap();
    store.put("/x", "1".into()).await.unwrap();
    assert!(watch.next().await.unwrap().is_ok());
    server.kill();
    let ended = tokio::time::timeout(Duration::from_secs(20), watch.next())
        .await
        .expect("the watch notices the dead server");
    assert!(
        matches!(ended, Some(Err(StoreError::Unavailable(_)))),
        "got {ended:?}"
    );
    match store.put("/x", "2".into()).await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn the_test_etcd_is_gone_with_its_dir_after_drop() {
    let server = EtcdServer::start().await;
    let (pid, dir) = (server.pid(), server.temp_dir().to_path_buf());
    assert!(dir.join("data").is_dir());
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(server);
    // Drop waits for the process, so it is reaped and its /proc entry is gone.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(!dir.exists());
}
