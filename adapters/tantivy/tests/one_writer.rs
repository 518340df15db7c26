//! One process at a time writes an embedded index: another one opened on the same directory
//! searches what the writer commits and rebuilds, its writes are refused naming the writer, and it
//! takes over once the writer is gone.

use chrono::Utc;
use herald_contracts::search::document;
use herald_domain::listing::NotificationFilter;
use herald_domain::search::SearchIndex;
use herald_tantivy::{TantivyConfig, TantivySearch};

async fn total(index: &TantivySearch) -> u64 {
    index.search(&NotificationFilter::default(), None, 10).await.unwrap().total
}

#[tokio::test]
async fn a_second_opener_searches_the_writers_index_and_writes_only_once_it_is_gone() {
    let data = tempfile::tempdir().unwrap();
    let config = TantivyConfig::in_data_dir(data.path());
    let writer = TantivySearch::open(&config).await.unwrap();
    writer.index(1, &[document("骑手通知", "一", Utc::now())]).await.unwrap();
    let other = TantivySearch::open(&config).await.unwrap();
    assert_eq!(total(&other).await, 1);

    let refused = other.index(2, &[document("第二个", "二", Utc::now())]).await.unwrap_err().to_string();
    let named = format!("written by another Herald process (pid {})", std::process::id());
    assert!(refused.contains(&named), "{refused}");
    assert!(other.begin_rebuild().await.is_err(), "a rebuild is a write too");

    // The writer rebuilds: the other follows it to the new generation.
    let mut rebuild = writer.begin_rebuild().await.unwrap();
    let rebuilt: Vec<_> = (0..3).map(|i| document(&format!("重建{i}"), "三", Utc::now())).collect();
    rebuild.add(&rebuilt).await.unwrap();
    rebuild.finish(5).await.unwrap();
    assert_eq!((other.applied().await.unwrap(), total(&other).await), (5, 3));

    drop(writer);
    other.index(6, &[document("接手", "四", Utc::now())]).await.unwrap();
    assert_eq!((other.applied().await.unwrap(), total(&other).await), (6, 4));
}
