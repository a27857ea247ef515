//! Save before act, also when saving fails (issue 13, finding 3): a store
//! that fails on demand stands in for a full disk or "Too many open files".

use super::*;
use crate::clock::SystemClock;
use crate::test_support::deployment;
use fabric_core::CoreConfig;
use std::sync::atomic::{AtomicBool, Ordering};

/// Keeps the last state in memory and fails while `failing` is set.
struct FlakyStore {
    failing: Arc<AtomicBool>,
    saved: Arc<Mutex<Option<PersistedState>>>,
}

impl Store for FlakyStore {
    fn describe(&self) -> String {
        "a flaky test store".into()
    }

    fn load(&self) -> Result<Option<PersistedState>, StoreError> {
        Ok(self.saved.lock().unwrap().clone())
    }
    fn save(&mut self, save: crate::store::Save<'_>) -> Result<(), StoreError> {
        let crate::store::Save::Full(state) = save else {
            panic!("this store wants whole states");
        };
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Io {
                path: "state.json".into(),
                source: std::io::Error::other("Too many open files (injected)"),
            });
        }
        *self.saved.lock().unwrap() = Some(state.clone());
        Ok(())
    }
}

fn node(domain: u32) -> NodeInfo {
    crate::test_support::node(domain, 2)
}

/// A controller on the real clock saving to `store`, its secrets key in
/// `key_dir`.
fn saving_to(
    store: Box<dyn Store>,
    key_dir: &std::path::Path,
    config: CoreConfig,
) -> Arc<Controller> {
    let clock = Arc::new(SystemClock::new());
    let core = FabricCore::new(config, clock.now());
    Controller::new(
        "c".into(),
        core,
        SecretStore::default(),
        clock,
        Some(Persistence::new(
            store,
            AtRestKey::open_or_create(key_dir).unwrap(),
        )),
    )
}

#[test]
fn a_decision_whose_save_failed_is_not_acted_on() {
    let dir = tempfile::tempdir().unwrap();
    let failing = Arc::new(AtomicBool::new(false));
    let store = FlakyStore {
        failing: failing.clone(),
        saved: Arc::default(),
    };
    let config = CoreConfig {
        // One server in HI must not stop healing here.
        hi_threshold: fabric_core::HiThreshold::Count(2),
        ..CoreConfig::default()
    };
    let controller = saving_to(Box::new(store), dir.path(), config);
    let (h1, h2) = (NodeId::new("host-1"), NodeId::new("host-2"));
    controller.register(h1.clone(), node(0), "b1");
    controller.register(h2.clone(), node(1), "b2");
    controller.deploy(deployment("web")).unwrap();
    let home = |c: &Controller| {
        c.read()
            .instances()
            .find(|i| i.id.deployment.as_str() == "web")
            .and_then(|i| i.node().cloned())
            .unwrap()
    };
    let first = home(&controller);
    let other = if first == h1 { h2.clone() } else { h1.clone() };
    let boot = |n: &NodeId| if *n == h1 { "b1" } else { "b2" };

    failing.store(true, Ordering::SeqCst);
    // An operator's decision that cannot be saved is refused and taken back.
    let err = controller.deploy(deployment("batch")).unwrap_err();
    assert!(err.to_string().contains("not saved"), "{err}");
    assert!(
        controller
            .read()
            .deployments()
            .all(|d| d.name.as_str() != "batch"),
        "a refused deploy leaves no trace"
    );
    assert!(
        controller.held().is_none(),
        "nothing is held: it was refused"
    );

    // A decision nobody waits on: the instance's server fails (a hardware
    // report would be refused like the deploy, so silence is used: a heal
    // decided by a tick).
    {
        let mut core = controller.read();
        let now = controller.clock().now();
        let at = |secs: u64| Moment {
            mono: now.mono + Duration::from_secs(secs),
            wall: now.wall + Duration::from_secs(secs),
        };
        // The surviving server is heard from throughout, the other silent.
        core.heartbeat(at(3600), &other, boot(&other), 1, vec![]);
        core.tick(at(3600));
        core.heartbeat(at(3659), &other, boot(&other), 2, vec![]);
        drop(core);
        controller
            .decide(Save::IfChanged, Nudge::Hosts, |core, _| {
                Ok(((), core.tick(at(3660))))
            })
            .unwrap();
    }
    assert_eq!(home(&controller), other, "the core decided to move it");
    let trouble = controller.held().expect("the decision is held");
    assert!(trouble.error.contains("Too many open files"));
    assert_eq!(controller.alarms()[0].kind, "state not saved");
    // The surviving server is told HOLD, not to start the moved instance.
    let reply = controller.heartbeat(&other, boot(&other), 3, vec![]);
    assert_eq!(reply.outcome, HeartbeatOutcome::Hold);
    assert!(reply.desired.is_empty());

    // The store recovers: the retry saves, and the decision is acted on.
    failing.store(false, Ordering::SeqCst);
    controller.retry_save();
    assert!(controller.held().is_none());
    assert!(controller.alarms().is_empty());
    let reply = controller.heartbeat(&other, boot(&other), 4, vec![]);
    assert_eq!(reply.outcome, HeartbeatOutcome::Accepted);
    assert!(
        reply
            .desired
            .iter()
            .any(|a| a.id.deployment.as_str() == "web"),
        "{reply:?}"
    );
}

/// A state with a fault under classification saves and loads: its incidents
/// are keyed by a struct, which JSON map keys cannot be (a save that failed
/// on exactly this was once acted on anyway; now it would be refused).
#[test]
fn a_state_with_incidents_saves_and_loads() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::log::LogStore::new(dir.path()).unwrap();
    let controller = saving_to(Box::new(store), dir.path(), CoreConfig::default());
    let h1 = NodeId::new("host-1");
    controller.register(h1.clone(), node(0), "b1");
    let report = FaultReport::new(
        fabric_core::FaultCause::GuestInitError,
        "guest agent failed creating transfer certificate: invalid date",
        "0.1.0",
        vec![],
    );
    controller
        .report_fault(&h1, &report)
        .expect("saved, incident and all");
    let saved = crate::store::log::LogStore::new(dir.path())
        .unwrap()
        .load()
        .unwrap()
        .expect("a saved state");
    assert_eq!(saved.core.cluster.incidents.len(), 1);
    assert_eq!(
        saved.core.cluster.incidents,
        controller.read().cluster().incidents
    );
}
