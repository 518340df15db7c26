//! What the contract cannot ask of every backend: an embedded index that is damaged or missing
//! opens empty (applied 0), so the feeder rebuilds it from SQL, and what a crash left beside it is
//! cleared away.

use std::path::{Path, PathBuf};

use chrono::Utc;
use herald_contracts::search::document;
use herald_domain::listing::NotificationFilter;
use herald_domain::search::SearchIndex;
use herald_tantivy::{TantivyConfig, TantivySearch};

async fn open(data: &Path) -> TantivySearch {
    TantivySearch::open(&TantivyConfig::in_data_dir(data)).await.unwrap()
}

async fn total(index: &TantivySearch) -> u64 {
    index.search(&NotificationFilter::default(), None, 10).await.unwrap().total
}

/// An index of three notifications at position 7, closed; the directory of its generation.
async fn indexed(data: &Path) -> PathBuf {
    let index = open(data).await;
    let docs: Vec<_> = (0..3).map(|i| document(&format!("骑手通知 {i}"), "正文", Utc::now())).collect();
    index.index(7, &docs).await.unwrap();
    assert_eq!((index.applied().await.unwrap(), total(&index).await), (7, 3));
    drop(index);
    let current = std::fs::read_to_string(data.join("search/CURRENT")).unwrap();
    data.join("search").join(current.trim())
}

/// The files of the generation's segments (not its meta file or locks).
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().ends_with(".json"))
        .filter(|p| !p.file_name().unwrap().to_string_lossy().ends_with(".lock"))
        .collect();
    files.sort();
    files
}

/// The index opened empty, and works: a rebuild from SQL can start from it.
async fn assert_opens_empty_and_works(data: &Path) {
    let index = open(data).await;
    assert_eq!((index.applied().await.unwrap(), total(&index).await), (0, 0), "opens empty");
    index.index(1, &[document("重建", "rebuilt", Utc::now())]).await.unwrap();
    assert_eq!(total(&index).await, 1);
    drop(index);
    let index = open(data).await;
    assert_eq!((index.applied().await.unwrap(), total(&index).await), (1, 1), "and durably so");
}

#[tokio::test]
async fn a_damaged_segment_file_opens_as_an_empty_index() {
    let probe = tempfile::tempdir().unwrap();
    let names: Vec<_> =
        segment_files(&indexed(probe.path()).await).iter().map(|p| p.file_name().unwrap().to_owned()).collect();
    assert!(names.len() >= 4, "postings, terms, positions, fast fields: {names:?}");
    for i in 0..names.len() {
        // Each file damaged in turn, in an index of its own.
        let data = tempfile::tempdir().unwrap();
        let generation = indexed(data.path()).await;
        let victim = &segment_files(&generation)[i];
        let mut bytes = std::fs::read(victim).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x5a;
        std::fs::write(victim, bytes).unwrap();
        assert_opens_empty_and_works(data.path()).await;
        assert!(!generation.exists(), "the damaged generation is removed");
    }
}

#[tokio::test]
async fn a_garbled_meta_file_opens_as_an_empty_index() {
    let data = tempfile::tempdir().unwrap();
    let generation = indexed(data.path()).await;
    std::fs::write(generation.join("meta.json"), b"{ not json").unwrap();
    assert_opens_empty_and_works(data.path()).await;
}

#[tokio::test]
async fn a_missing_index_opens_empty() {
    let data = tempfile::tempdir().unwrap();
    let generation = indexed(data.path()).await;
    std::fs::remove_dir_all(&generation).unwrap();
    assert_opens_empty_and_works(data.path()).await;
    let data = tempfile::tempdir().unwrap();
    indexed(data.path()).await;
    std::fs::remove_dir_all(data.path().join("search")).unwrap();
    assert_opens_empty_and_works(data.path()).await;
}

#[tokio::test]
async fn what_an_unfinished_rebuild_left_is_removed_and_the_index_kept() {
    let data = tempfile::tempdir().unwrap();
    indexed(data.path()).await;
    // A crash mid-rebuild leaves a generation that CURRENT does not name, and maybe a pointer
    // written aside but not renamed.
    let leftover = data.path().join("search/g1");
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("meta.json"), b"{}").unwrap();
    std::fs::write(data.path().join("search/CURRENT.new"), b"g1").unwrap();
    let index = open(data.path()).await;
    assert_eq!((index.applied().await.unwrap(), total(&index).await), (7, 3));
    // The process that writes next (the only one that may) removes it.
    index.index(8, &[]).await.unwrap();
    assert_eq!((index.applied().await.unwrap(), total(&index).await), (8, 3));
    let dirs = std::fs::read_dir(data.path().join("search")).unwrap().filter(|e| e.as_ref().unwrap().path().is_dir());
    assert_eq!(dirs.count(), 1, "only the generation in use is left");
}
