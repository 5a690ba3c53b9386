//! The store on its own: fills, reads, ranges, the bound, purges.

use std::time::SystemTime;

use bytes::Bytes;
use pingora_cache::storage::MissFinishType;
use pingora_cache::trace::Span;
use pingora_http::ResponseHeader;

use super::*;

fn store(memory: usize) -> &'static Store {
    let gauge = prometheus::IntGauge::new("test_bytes", "test").unwrap();
    Box::leak(Box::new(Store::new(memory, gauge)))
}

fn key(path: &str) -> CacheKey {
    let mut key = CacheKey::new(format!("host\0{path}"), "");
    key.extensions.insert(Label {
        path: path.into(),
        max_object_size: 1 << 20,
    });
    key
}

fn meta(len: usize) -> CacheMeta {
    let mut header = ResponseHeader::build(200, None).unwrap();
    header.insert_header("content-length", len).unwrap();
    let now = SystemTime::now();
    CacheMeta::new(now + std::time::Duration::from_secs(60), now, 0, 0, header)
}

async fn fill(store: &'static Store, path: &str, body: &[u8]) -> Result<MissFinishType> {
    let span = Span::inactive().handle();
    let mut miss = store
        .get_miss_handler(&key(path), &meta(body.len()), &span)
        .await?;
    miss.write_body(Bytes::copy_from_slice(body), true).await?;
    miss.finish().await
}

async fn read(store: &'static Store, path: &str) -> Option<Vec<u8>> {
    let span = Span::inactive().handle();
    let (_, mut hit) = store.lookup(&key(path), &span).await.unwrap()?;
    let mut out = Vec::new();
    while let Some(chunk) = hit.read_body().await.unwrap() {
        out.extend_from_slice(&chunk);
    }
    Some(out)
}

#[tokio::test]
async fn a_fill_is_read_back_whole_and_by_range() {
    let store = store(8 << 20);
    assert!(read(store, "/a").await.is_none());
    fill(store, "/a", b"hello world").await.unwrap();
    assert_eq!(read(store, "/a").await.unwrap(), b"hello world");
    let span = Span::inactive().handle();
    let (_, mut hit) = store.lookup(&key("/a"), &span).await.unwrap().unwrap();
    hit.seek(6, Some(11)).unwrap();
    assert_eq!(hit.read_body().await.unwrap().unwrap(), "world");
    assert!(hit.seek(11, None).is_err());
    assert_eq!(
        store.usage().filling_bytes,
        0,
        "the fill released its budget"
    );
}

#[tokio::test]
async fn the_store_never_holds_more_than_its_memory() {
    let memory = 2 << 20;
    let store = store(memory);
    let body = vec![b'x'; 20 * 1024];
    for i in 0..2000 {
        let _ = fill(store, &format!("/spray/{i}"), &body).await;
        let usage = store.usage();
        assert!(
            usage.stored_bytes + usage.filling_bytes <= memory,
            "{} stored at fill {i}",
            usage.stored_bytes
        );
    }
    assert!(store.usage().stored_bytes > memory / 2, "the store is used");
    let indexed: usize = store.index().by_path.values().map(Vec::len).sum();
    let live = (0..2000)
        .filter(|i| store.get(key_of(&key(&format!("/spray/{i}")))).is_some())
        .count();
    assert_eq!(indexed, live, "the index lists exactly the stored objects");
}

#[tokio::test]
async fn a_fill_beyond_the_budget_is_refused_and_released() {
    let memory = 1 << 20;
    let store = store(memory);
    let body = vec![b'x'; memory / 8 + 1];
    assert!(fill(store, "/big", &body).await.is_err());
    assert_eq!(store.usage().filling_bytes, 0);
    assert!(read(store, "/big").await.is_none());
}

#[tokio::test]
async fn readers_stream_a_fill_as_it_arrives_and_fail_if_it_breaks_off() {
    let store = store(8 << 20);
    let span = Span::inactive().handle();
    let mut miss = store
        .get_miss_handler(&key("/live"), &meta(10), &span)
        .await
        .unwrap();
    miss.write_body(Bytes::from_static(b"01234"), false)
        .await
        .unwrap();
    let (_, mut early) = store.lookup(&key("/live"), &span).await.unwrap().unwrap();
    let (_, mut ranged) = store.lookup(&key("/live"), &span).await.unwrap().unwrap();
    ranged.seek(3, Some(8)).unwrap();
    assert_eq!(early.read_body().await.unwrap().unwrap(), "01234");
    assert_eq!(ranged.read_body().await.unwrap().unwrap(), "34");
    let writer = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        miss.write_body(Bytes::from_static(b"56789"), true)
            .await
            .unwrap();
        miss.finish().await.unwrap();
    });
    assert_eq!(early.read_body().await.unwrap().unwrap(), "56789");
    assert!(early.read_body().await.unwrap().is_none());
    assert_eq!(ranged.read_body().await.unwrap().unwrap(), "567");
    assert!(ranged.read_body().await.unwrap().is_none());
    writer.await.unwrap();
    assert_eq!(read(store, "/live").await.unwrap(), b"0123456789");
    assert!(store.filling_table().is_empty());

    let mut broken = store
        .get_miss_handler(&key("/broken"), &meta(10), &span)
        .await
        .unwrap();
    broken
        .write_body(Bytes::from_static(b"012"), false)
        .await
        .unwrap();
    let (_, mut reader) = store.lookup(&key("/broken"), &span).await.unwrap().unwrap();
    assert_eq!(reader.read_body().await.unwrap().unwrap(), "012");
    drop(broken);
    assert!(
        reader.read_body().await.is_err(),
        "a broken fill is an error, not a short body"
    );
    assert!(store
        .lookup(&key("/broken"), &span)
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.usage().filling_bytes, 0);
}

#[tokio::test]
async fn a_fill_purged_while_it_runs_is_not_stored() {
    let store = store(8 << 20);
    let span = Span::inactive().handle();
    let mut miss = store
        .get_miss_handler(&key("/api/x"), &meta(1), &span)
        .await
        .unwrap();
    assert_eq!(store.purge_prefix("/api/"), 0);
    miss.write_body(Bytes::from_static(b"x"), true)
        .await
        .unwrap();
    miss.finish().await.unwrap();
    assert!(read(store, "/api/x").await.is_none());
}

#[tokio::test]
async fn purges_by_path_and_prefix_count_what_they_removed() {
    let store = store(8 << 20);
    for path in [
        "/api/music/1",
        "/api/music/2",
        "/api/musicx",
        "/api/images/1",
    ] {
        fill(store, path, b"x").await.unwrap();
    }
    assert_eq!(store.purge_path("/api/music/1"), 1);
    assert_eq!(store.purge_path("/api/music/1"), 0);
    assert_eq!(store.purge_prefix("/api/music/"), 1);
    assert_eq!(store.purge_prefix("/api/"), 2);
    assert_eq!(store.usage().stored_bytes, 0);
    assert!(store.index().by_path.is_empty());
}
