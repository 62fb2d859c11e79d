//! The world's cache of rendered host trees.
//!
//! Rendering a host's whole tree ([`World::tree`]) is most of the cost of a simulated
//! attach+detach: the port ([`World::tree_shared`] behind the harness's `SimHost`) takes one
//! after every change, and the world itself resolves control paths and `/dev` names through
//! one (`write_control`, `remove`, `blockdev`, `cat`...), usually for the very state the port
//! has just rendered. This cache keeps the last rendered tree of each host, shared
//! (`Arc<Tree>`), for as long as the model does not change.
//!
//! # Invalidation rule
//!
//! Only `pub fn`s taking `&mut self` can change the model from outside the crate (its fields
//! are private), and every rendered tree is a pure function of the model. So each of them
//! drops the cache ([`World::model_changed`]):
//!
//! - at its entry when it renders nothing itself (`map_volume`, `advance`, `inject`...);
//! - at its exit when it reads a rendered tree before changing anything (`write_control`,
//!   `remove`, `exec`): those may use the tree the port rendered for the current state, and
//!   whatever they change is dropped as they return. A `&mut self` helper must never render
//!   after it changed the model without going through one of these (as `tee` does, through
//!   the public `write_control`). `exec` keeps the cache after a query
//!   ([`World::command_may_change_host`] is `false`: the contract the harness's port already
//!   relies on to keep its view).
//!
//! A new `pub fn(&mut self)` on [`World`] must follow the rule. `cache_tests` checks, after
//! every step of random histories, that the cached tree equals a fresh render.
//!
//! # Session fragments
//!
//! A new state still needs a new tree, and most of a tree is the iSCSI sessions (a session
//! with one LUN is about 300 nodes), which most changes (a udev event, a link removed, a map
//! created) leave as they were. So [`World::tree`] renders each session into a tree of its
//! own (the session, its SCSI host and connection: [`ShellKey`]; each of its LUNs but for
//! their dm holders links: [`LunKey`]; each dm map: [`DmKey`]), kept with the inputs it was
//! rendered from (the session, the device, the map, the host's IP and initiator name,
//! whether the portal is down), and reuses it
//! while those inputs compare equal; this cache survives model changes,
//! since the key itself says whether a fragment is current. The parts are then joined by
//! [`Tree::union`] (the last few joins of each host are kept: [`JOINS_KEPT`]); if two parts
//! disagree about one path (then the order of rendering would
//! decide), the tree is rendered in one pass instead ([`World::render_whole`], the reference
//! the tests compare with).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::ids::HostId;
use crate::kernel::{DmMap, ScsiDev, Session};
use crate::naming::Hctl;
use crate::tree::Tree;
use crate::world::World;

/// Locks a cache map. A panic while holding the lock cannot leave a half-written entry (an
/// insert of finished values is the only write): the content is still good.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Everything [`World::render_session_shell`] reads: equal keys, equal fragments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShellKey {
    ip: String,
    initiator_iqn: String,
    portal_down: bool,
    session: Session,
}

/// Everything [`World::render_session_lun`] reads: equal keys, equal fragments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LunKey {
    session: Session,
    portal_down: bool,
    device: ScsiDev,
}

/// Everything [`World::render_dm`] reads: equal keys, equal fragments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DmKey {
    map: DmMap,
    slaves: Vec<(String, Option<String>)>,
}

/// Rendered fragments and what they were rendered from, by slot.
type Fragments<S, K> = Mutex<BTreeMap<S, (K, Arc<Tree>)>>;

/// The last rendered tree of each host, valid until the model changes, and the rendered
/// session parts, valid while their keys are.
#[derive(Debug, Default)]
pub(crate) struct TreeCache {
    trees: Mutex<BTreeMap<HostId, Arc<Tree>>>,
    /// (host, session id) -> session without its LUNs.
    shells: Fragments<(HostId, u32), ShellKey>,
    /// (host, H:C:T:L) -> one LUN of a session.
    luns: Fragments<(HostId, Hctl), LunKey>,
    /// (host, dm minor) -> one dm map.
    dms: Fragments<(HostId, u32), DmKey>,
    /// host -> the fragments last joined with the static sysfs, and the result: the last
    /// [`JOINS_KEPT`], most recent first.
    joined: Mutex<BTreeMap<HostId, Vec<JoinedSessions>>>,
}

/// How many joins of session fragments each host keeps. An attach+detach goes through the
/// same sets of fragments forwards and back (none, a session, a session and its LUN, the
/// session again, none again): the way back finds its joins here.
const JOINS_KEPT: usize = 4;

/// The static sysfs joined with the session fragments of one host.
#[derive(Debug)]
struct JoinedSessions {
    fragments: Vec<Arc<Tree>>,
    tree: Option<Arc<Tree>>,
}

impl TreeCache {
    /// Forgets every whole tree (no locking: `&mut` proves no one else holds it). Fragments
    /// stay: their keys tell whether they are current.
    fn clear(&mut self) {
        self.trees
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// The fragment in `slot` if its key `matches` (compared with borrowed inputs, so that a
/// hit, most lookups, copies nothing), else a new one from `render`, kept with `key()`.
fn fragment<S: Ord, K>(
    cache: &Fragments<S, K>,
    slot: S,
    matches: impl FnOnce(&K) -> bool,
    key: impl FnOnce() -> K,
    render: impl FnOnce(&mut Tree),
) -> Arc<Tree> {
    if let Some((k, t)) = lock(cache).get(&slot)
        && matches(k)
    {
        return Arc::clone(t);
    }
    let mut t = Tree::new();
    render(&mut t);
    let t = Arc::new(t);
    lock(cache).insert(slot, (key(), Arc::clone(&t)));
    t
}

impl World {
    /// The host's whole view, as [`World::tree`] renders it, shared: rendered once per state
    /// of the model, then served from the cache until the model changes.
    pub fn tree_shared(&self, host: HostId) -> Arc<Tree> {
        if let Some(t) = lock(&self.trees.trees).get(&host) {
            return Arc::clone(t);
        }
        let t = Arc::new(self.tree(host));
        lock(&self.trees.trees).insert(host, Arc::clone(&t));
        t
    }

    /// [`World::render_whole`]'s tree joined from parts: the static sysfs, each session
    /// (cached), and the rest rendered now. `None` if the parts overlap with different
    /// nodes.
    pub(crate) fn render_from_parts(&self, host: HostId) -> Option<Tree> {
        static BASE: std::sync::OnceLock<Tree> = std::sync::OnceLock::new();
        let base = BASE.get_or_init(|| {
            let mut t = Tree::new();
            crate::kernel::sysfs::render_sysfs_base(&mut t);
            t
        });
        let h = self.host_ref(host);
        let k = &h.kernel;
        let mut fragments: Vec<Arc<Tree>> = Vec::new();
        let mut rest = Tree::new();
        for s in k.sessions.values() {
            let portal_down = self.portal_down(host, &s.portal);
            let mut has_devices = false;
            for d in k.devices.values().filter(|d| d.sid == s.sid) {
                has_devices = true;
                fragments.push(fragment(
                    &self.trees.luns,
                    (host, d.hctl),
                    |k| k.portal_down == portal_down && k.session == *s && k.device == *d,
                    || LunKey {
                        session: s.clone(),
                        portal_down,
                        device: d.clone(),
                    },
                    |t| self.render_session_lun(host, s, d, t),
                ));
                // Its dm holders change with multipathd: rendered every time.
                self.render_session_lun_holders(host, s, d, &mut rest);
            }
            fragments.push(fragment(
                &self.trees.shells,
                (host, s.sid),
                |k| {
                    k.ip == h.spec.ip
                        && k.initiator_iqn == h.spec.initiator_iqn
                        && k.portal_down == portal_down
                        && k.session == *s
                },
                || ShellKey {
                    ip: h.spec.ip.clone(),
                    initiator_iqn: h.spec.initiator_iqn.clone(),
                    portal_down,
                    session: s.clone(),
                },
                |t| self.render_session_shell(host, s, t),
            ));
            // A few nodes: rendered every time.
            if has_devices {
                crate::kernel::sysfs::render_session_target(s, &mut rest);
            }
        }
        for m in k.dms.values() {
            let slaves = self.dm_slave_dirs(host, m);
            fragments.push(fragment(
                &self.trees.dms,
                (host, m.minor),
                |k| k.map == *m && k.slaves == slaves,
                || DmKey {
                    map: m.clone(),
                    slaves: slaves.clone(),
                },
                |t| self.render_dm(host, m, t),
            ));
        }
        // Fragments of sessions, LUNs and maps that are gone are dropped.
        lock(&self.trees.shells)
            .retain(|(h, sid), _| *h != host || k.sessions.values().any(|s| s.sid == *sid));
        lock(&self.trees.dms).retain(|(h, minor), _| *h != host || k.dms.contains_key(minor));
        lock(&self.trees.luns).retain(|(h, hctl), (key, _)| {
            *h != host
                || k.devices
                    .values()
                    .any(|d| d.hctl == *hctl && d.sid == key.session.sid)
        });
        self.render_fc(host, &mut rest);
        self.render_nvme(host, &mut rest);
        self.render_dev(host, &mut rest);
        self.render_etc(host, &mut rest);
        // The sessions change less often than the rest: their last joins are kept (reused
        // for the same fragments), and the rest is inserted into a copy of one.
        let same = |j: &JoinedSessions| {
            j.fragments.len() == fragments.len()
                && j.fragments
                    .iter()
                    .zip(&fragments)
                    .all(|(a, b)| Arc::ptr_eq(a, b))
        };
        let cached = {
            let mut joined = lock(&self.trees.joined);
            let kept = joined.entry(host).or_default();
            kept.iter().position(same).map(|i| {
                // The most recent first.
                let j = kept.remove(i);
                let tree = j.tree.clone();
                kept.insert(0, j);
                tree
            })
        };
        let sessions = match cached {
            Some(tree) => tree,
            None => {
                let mut parts: Vec<&Tree> = vec![base];
                parts.extend(fragments.iter().map(|f| &**f));
                let tree = Tree::union(&parts).map(Arc::new);
                let mut joined = lock(&self.trees.joined);
                let kept = joined.entry(host).or_default();
                kept.insert(
                    0,
                    JoinedSessions {
                        fragments,
                        tree: tree.clone(),
                    },
                );
                kept.truncate(JOINS_KEPT);
                tree
            }
        };
        let joined = sessions.and_then(|s| (*s).clone().union_with(&rest));
        if joined.is_none() {
            tracing::debug!(%host, "tree parts disagree: rendering in one pass");
        }
        joined
    }

    /// Drops every cached tree: the model may have changed (see the module doc for when).
    pub(crate) fn model_changed(&mut self) {
        self.trees.clear();
    }
}

#[cfg(test)]
mod cache_tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use crate::array::ArraySpec;
    use crate::faults::{Fault, Times, UdevAction};
    use crate::ids::{HostId, VolumeId};
    use crate::world::{HostSpec, World};

    /// A world with a single-path and a multipath host and three volumes on one array with
    /// two portals; with `attached`, the first two volumes are mapped to both hosts, which
    /// logged in and settled.
    fn world(seed: u64, attached: bool) -> (World, [HostId; 2], Vec<VolumeId>) {
        let mut w = World::new(seed);
        let mut mp = HostSpec::new("mp");
        mp.multipathd = true;
        let hosts = [w.add_host(HostSpec::new("sp")), w.add_host(mp)];
        let a = w.add_array(ArraySpec::new(
            "a",
            vec!["10.0.2.2:3260".into(), "10.0.3.2:3260".into()],
        ));
        let vols: Vec<VolumeId> = (0..3)
            .map(|i| w.create_volume(a, &format!("v{i}"), 1 << 30).unwrap())
            .collect();
        if attached {
            for h in hosts {
                for op in [0, 2, 3] {
                    step(&mut w, op, h, vols[0], 0);
                    step(&mut w, op, h, vols[1], 0);
                }
            }
            w.settle();
        }
        (w, hosts, vols)
    }

    fn run(w: &mut World, h: HostId, argv: &[&str], stdin: Option<&str>) {
        let argv: Vec<String> = argv.iter().map(|a| (*a).to_owned()).collect();
        let _ = w.exec(h, &argv, stdin);
    }

    /// The name of the `n`th entry (modulo their number) of a directory of the host's tree.
    fn nth_child(w: &World, h: HostId, dir: &str, n: u8) -> Option<String> {
        let t = w.tree_shared(h);
        let names: Vec<&str> = t.children(dir).map(|(name, _)| name).collect();
        let i = usize::from(n) % names.len().max(1);
        names.get(i).map(|s| (*s).to_owned())
    }

    /// One step of a history: a model change through one kind of public entry.
    fn step(w: &mut World, op: u8, h: HostId, v: VolumeId, n: u8) {
        match op {
            0 => {
                let _ = w.map_volume(v, h);
            }
            1 => {
                let _ = w.unmap_volume(v, h);
            }
            2 => {
                for p in ["10.0.2.2:3260", "10.0.3.2:3260"] {
                    let argv = ["iscsiadm", "-m", "discovery", "-t", "st", "-p", p];
                    run(w, h, &argv, None);
                }
            }
            3 => run(w, h, &["iscsiadm", "-m", "node", "--login"], None),
            4 => run(w, h, &["iscsiadm", "-m", "node", "--logout"], None),
            5 => {
                if let Some(host) = nth_child(w, h, "/sys/class/scsi_host", n) {
                    let path = format!("/sys/class/scsi_host/{host}/scan");
                    let _ = w.write_control(h, &path, "- - -");
                }
            }
            6 => {
                if let Some(hctl) = nth_child(w, h, "/sys/class/scsi_device", n) {
                    let path = format!("/sys/class/scsi_device/{hctl}/device/delete");
                    let _ = w.write_control(h, &path, "1");
                }
            }
            7 => {
                let link = w
                    .tree_shared(h)
                    .iter()
                    .find_map(|(p, _)| p.starts_with("/dev/disk/by-path/").then(|| p.to_owned()));
                if let Some(l) = link {
                    let _ = w.remove(h, &l);
                }
            }
            8 => w.advance(Duration::from_millis(20 * u64::from(n))),
            9 => w.settle(),
            10 => w.inject(Fault::UdevLost {
                host: h,
                action: UdevAction::Remove,
                times: Times::Count(1),
            }),
            11 => w.clear_faults(),
            12 => run(w, h, &["multipath", "-r"], None),
            // Queries, some firing faults: they keep the cache.
            15 => {
                w.inject(Fault::BlockdevFlushFails {
                    host: h,
                    times: Times::Count(1),
                });
                run(w, h, &["blockdev", "--flushbufs", "/dev/sda"], None);
            }
            16 => run(w, h, &["iscsiadm", "-m", "session"], None),
            17 => run(w, h, &["multipath", "-ll"], None),
            18 => run(w, h, &["cat", "/sys/block/sda/device/state"], None),
            19 => run(w, h, &["dd", "if=/dev/sda", "of=/dev/null"], None),
            // Session and LUN states follow the portal.
            20 => w.inject(Fault::PortalDown {
                host: h,
                portal: "10.0.3.2:3260".into(),
            }),
            13 => {
                let _ = w.delete_volume(v);
            }
            _ => {
                let path = format!("/sys/class/scsi_host/host{n}/scan");
                run(w, h, &["tee", "-a", &path], Some("- - -"));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// After every step of a random history, the cached tree of each host, and the tree
        /// joined from cached session fragments, equal a fresh render in one pass, even
        /// though the caches were filled just before the step.
        #[test]
        fn the_cached_tree_is_a_fresh_render_after_every_step(
            seed in 0u64..1000,
            attached in any::<bool>(),
            steps in prop::collection::vec((0u8..21, 0usize..2, 0usize..3, 0u8..5), 1..40),
        ) {
            let (mut w, hosts, vols) = world(seed, attached);
            let mut biggest = 0;
            for (i, (op, h, v, n)) in steps.into_iter().enumerate() {
                for &h in &hosts {
                    let _ = w.tree_shared(h);
                }
                step(&mut w, op, hosts[h], vols[v], n);
                for &h in &hosts {
                    let cached = w.tree_shared(h);
                    let fresh = w.render_whole(h);
                    prop_assert!(*cached == fresh, "step {i} (op {op}): host {h} differs: {:?}", cached.diff(&fresh));
                    let joined = w.render_from_parts(h);
                    prop_assert!(joined.as_ref() == Some(&fresh), "step {i} (op {op}): host {h}: parts differ");
                    biggest = biggest.max(fresh.len());
                }
            }
            prop_assert!(biggest > 0);
        }
    }

    #[test]
    fn histories_reach_sessions_devices_and_maps() {
        // The steps above do reach the states that matter: log in, scan, udev, multipath.
        let (w, [sp, mp], _) = world(1, true);
        assert!(nth_child(&w, sp, "/sys/class/scsi_device", 0).is_some());
        let t = w.tree_shared(mp);
        assert!(t.iter().any(|(p, _)| p.starts_with("/dev/disk/by-path/")));
        assert!(
            t.iter().any(|(p, _)| p.starts_with("/dev/mapper/3")),
            "a map"
        );
        assert_eq!(*t, w.render_whole(mp));
        assert_eq!(w.render_from_parts(mp).as_ref(), Some(&*t));
    }
}
