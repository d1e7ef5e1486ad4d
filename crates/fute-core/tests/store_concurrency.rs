//! The store waits for another process's lock instead of failing at once.

use fute_core::embedding::Store;
use std::time::{Duration, Instant};

#[test]
fn opening_a_store_waits_for_a_writer_holding_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.sqlite");
    // Another "process" (a second connection) creates the file and holds an
    // exclusive lock for 400 ms, as a concurrent `fute` storing a vector would.
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder
        .execute_batch("BEGIN EXCLUSIVE; CREATE TABLE other(x);")
        .unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        holder.execute_batch("COMMIT;").unwrap();
    });
    let t = Instant::now();
    let store = Store::open(dir.path());
    release.join().unwrap();
    let store = store.expect("waits for the lock instead of failing with `database is locked`");
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(store.list(&Default::default()).unwrap().is_empty());
}
