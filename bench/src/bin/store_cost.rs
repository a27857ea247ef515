//! What durability costs the controller: the time to save its state per
//! decision, and the memory and disk it uses per 1,000 VMs.
//!
//! The baseline, in the same run, is writing the whole state per decision
//! (what the single-file store did); the figure is the log store's append of
//! what the decision changed.
//!
//! Run: `cargo run --release -p fabric-bench --bin store-cost`.

#[path = "../store_model.rs"]
mod store_model;

use fabric_controller::store::log::LogStore;
use fabric_controller::store::{ChangeRecord, PersistedState, Save, Store};
use std::time::Instant;
use store_model::{cluster, one_event};

/// This process's resident memory.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    println!(
        "Controller durability cost per decision (release build; fsync): the log store's \
         append against the full state file it replaced, in the same run"
    );
    for vms in [1_000u32, 10_000, 100_000] {
        let before = rss_kib();
        let mut core = cluster(vms);
        let after = rss_kib();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = LogStore::new(dir.path()).expect("store");
        let rounds = if vms >= 100_000 { 5 } else { 20 };

        // The baseline: a whole state per decision (the single-file store).
        let mut generation = 0;
        let started = Instant::now();
        for round in 0..rounds {
            one_event(&mut core, round);
            generation += 1;
            let mut snapshot = core.snapshot();
            snapshot.identity.generation = generation;
            let state = PersistedState {
                core: snapshot,
                secrets: vec![],
            };
            store.save(Save::Full(&state)).expect("save");
            core.all_saved();
        }
        let full = started.elapsed() / rounds as u32;
        let size = std::fs::metadata(store.path()).expect("file").len();

        // O(change): what one decision changed, appended.
        let appends = 200u64;
        let started = Instant::now();
        let mut bytes = 0;
        for round in rounds..rounds + appends {
            one_event(&mut core, round);
            generation += 1;
            let record = ChangeRecord {
                core: core.take_changes(generation),
                secrets: None,
            };
            bytes += serde_json::to_vec(&record).expect("encode").len();
            store.save(Save::Changes(&record)).expect("append");
        }
        let append = started.elapsed() / appends as u32;

        let started = Instant::now();
        let loaded = store.load().expect("load").expect("state");
        let load = started.elapsed();
        assert_eq!(loaded.core.instances.len(), vms as usize);
        println!(
            "  {vms:>7} VMs: append {:.3} ms per decision ({} bytes) vs whole state {:.2} ms \
             ({:.0} KiB): {:.1}x less; load (snapshot + {appends} records) {:.1} ms; \
             core memory ~{} KiB ({:.0} KiB per 1,000 VMs)",
            append.as_secs_f64() * 1e3,
            bytes / appends as usize,
            full.as_secs_f64() * 1e3,
            size as f64 / 1024.0,
            full.as_secs_f64() / append.as_secs_f64(),
            load.as_secs_f64() * 1e3,
            after.saturating_sub(before),
            after.saturating_sub(before) as f64 / (f64::from(vms) / 1000.0),
        );
    }
}
