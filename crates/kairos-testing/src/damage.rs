//! A redb store file damaged on purpose: written, closed and compacted (so that no free page is
//! left for the damage to land in harmlessly), then copied with its bytes broken in the two ways
//! the corruption tests check.

use std::path::Path;

use kairos_store::redb::RedbStore;
use kairos_store::{JobStore, PutMode, StoredJob};

/// Creates `jobs` in a new store at `path` (16 partitions, each create from its own task),
/// closes and compacts it, and returns the file's bytes.
///
/// # Panics
/// When the store cannot be written or compacted (it is for tests).
pub async fn compacted_store_file(path: &Path, jobs: impl IntoIterator<Item = StoredJob>) -> Vec<u8> {
    {
        let store = RedbStore::open(path, 16).unwrap();
        let mut puts = Vec::new();
        for job in jobs {
            let store = store.clone();
            puts.push(tokio::spawn(async move { store.put(job, PutMode::CreateOnly).await }));
        }
        for put in puts {
            put.await.unwrap().unwrap();
        }
    }
    let mut db = redb::Database::open(path).unwrap();
    while db.compact().unwrap() {}
    drop(db);
    std::fs::read(path).unwrap()
}

/// Two damaged copies of `clean`, each named by what was done to it: one byte flipped every
/// 64 KiB, and 4 KiB of garbage in the middle of the file.
pub fn damaged(clean: &[u8]) -> [(&'static str, Vec<u8>); 2] {
    let mut flipped = clean.to_vec();
    for offset in (4096..flipped.len()).step_by(64 << 10) {
        flipped[offset] ^= 0xff;
    }
    let mut garbage = clean.to_vec();
    let middle = (garbage.len() / 2) & !4095;
    for (i, byte) in garbage[middle..middle + 4096].iter_mut().enumerate() {
        *byte = (i * 7 + 13) as u8;
    }
    [("a byte flipped every 64 KiB", flipped), ("4 KiB of garbage mid-file", garbage)]
}
