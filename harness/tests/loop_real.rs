//! Real-kernel loop devices: attach, detach and check through the local connector on `/`.
//!
//! These tests need root, `/dev/loop-control` and `losetup`; elsewhere each prints
//! `skipped: <reason>` and passes. They only ever detach devices backed by their own files,
//! and each test has its own target (own directory, own files), so they run in parallel. They
//! assert identities, never device numbers: under parallel tests the kernel may hand the
//! freed loop device to another test.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::Command;

use brick_connectors::local::loop_identity;
use brick_harness::PropertyKind;
use brick_harness::loopdev::{LoopError, LoopTarget};

const MIB: u64 = 1024 * 1024;

/// A target, or `None` after printing why loop devices are unavailable here.
fn target() -> Option<LoopTarget> {
    if let Some(reason) = LoopTarget::unavailable_reason() {
        println!("skipped: {reason}");
        return None;
    }
    Some(LoopTarget::new().unwrap())
}

/// `/sys/block/<name>/loop/backing_file`, `None` when the device is not attached.
fn sysfs_backing(name: &str) -> Option<String> {
    std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file"))
        .ok()
        .map(|s| s.trim_end_matches('\n').to_owned())
        .filter(|s| !s.is_empty())
}

/// Whether the kernel still has `name` attached to `file` (or to `file (deleted)`).
fn still_backed_by(name: &str, file: &str) -> bool {
    sysfs_backing(name).is_some_and(|b| b == file || b.strip_suffix(" (deleted)") == Some(file))
}

#[test]
fn attach_reports_the_volume_and_detach_leaves_nothing() {
    let Some(mut t) = target() else { return };
    let file = t.create_volume("vol-a", MIB).unwrap();
    let file = file.to_str().unwrap().to_owned();
    assert_eq!(std::fs::metadata(&file).unwrap().len(), MIB);
    let dev = t.attach("vol-a").unwrap();
    println!("attached {} -> {:?}", dev.device, sysfs_backing(dev.name()));
    assert!(dev.name().starts_with("loop"));
    assert_eq!(sysfs_backing(dev.name()).as_deref(), Some(file.as_str()));
    assert_eq!(
        std::fs::read_to_string(format!("/sys/block/{}/size", dev.name()))
            .unwrap()
            .trim(),
        (MIB / 512).to_string()
    );
    let props = t.connection_properties("vol-a").unwrap();
    assert_eq!(
        props,
        serde_json::json!({"driver_volume_type": "local", "data": {"device_path": dev.device.as_str()}})
    );
    let paths = t.volume_paths(&props).unwrap();
    println!("get_volume_paths while attached: {paths:?}");
    assert_eq!(paths.paths.len(), 1);
    assert_eq!(paths.paths[0].device.as_ref(), Some(&dev.device));
    assert_eq!(
        paths.paths[0].wwid.as_ref(),
        Some(&t.identity("vol-a").unwrap())
    );
    assert_eq!(t.identity("vol-a").unwrap(), loop_identity(&file).unwrap());
    assert_eq!(t.check(), vec![]);
    assert!(matches!(
        t.attach("vol-a"),
        Err(LoopError::AlreadyAttached { .. })
    ));

    t.detach("vol-a").unwrap();
    println!(
        "after detach: /sys/block/{}/loop exists: {}, backing_file {:?}, /dev node exists: {}",
        dev.name(),
        std::path::Path::new(&format!("/sys/block/{}/loop", dev.name())).exists(),
        sysfs_backing(dev.name()),
        dev.device.under(std::path::Path::new("/")).exists()
    );
    assert!(!still_backed_by(dev.name(), &file));
    let after = t.volume_paths(&props).unwrap();
    println!("get_volume_paths after detach: {after:?}");
    assert!(
        after
            .paths
            .iter()
            .all(|p| p.wwid.as_ref() != Some(&t.identity("vol-a").unwrap())),
        "{after:?}"
    );
    assert!(
        after
            .diagnostics
            .iter()
            .any(|d| d.message.contains("not attached")),
        "{after:?}"
    );
    assert_eq!(t.check(), vec![]);
    assert!(t.connection_properties("vol-a").is_err());
    assert!(matches!(
        t.detach("vol-a"),
        Err(LoopError::NotAttached { .. })
    ));
}

#[test]
fn a_reused_device_reports_the_new_volume_never_the_old() {
    let Some(mut t) = target() else { return };
    t.create_volume("vol-a", MIB).unwrap();
    t.create_volume("vol-b", 2 * MIB).unwrap();
    let a = t.attach("vol-a").unwrap();
    let old_props = a.connection_properties();
    t.detach("vol-a").unwrap();
    let b = t.attach("vol-b").unwrap();
    println!("vol-a had {}, vol-b got {}", a.device, b.device);
    let (id_a, id_b) = (t.identity("vol-a").unwrap(), t.identity("vol-b").unwrap());
    let new = t.volume_paths(&b.connection_properties()).unwrap();
    assert_eq!(new.paths.len(), 1);
    assert_eq!(new.paths[0].wwid.as_ref(), Some(&id_b));
    // A's stale properties: the same device number (usually) now carries B; never A.
    let stale = t.volume_paths(&old_props).unwrap();
    println!("get_volume_paths for vol-a's old properties: {stale:?}");
    assert!(stale.paths.iter().all(|p| p.wwid.as_ref() != Some(&id_a)));
    if a.device == b.device {
        assert_eq!(stale.paths[0].wwid.as_ref(), Some(&id_b));
    }
    assert_eq!(t.check(), vec![]);
}

#[test]
fn a_leaked_detach_of_a_deleted_volume_is_flagged() {
    let Some(mut t) = target() else { return };
    let file = t.create_volume("vol-a", MIB).unwrap();
    let file = file.to_str().unwrap().to_owned();
    let dev = t.attach("vol-a").unwrap();
    // The array deletes the volume while the host still has it attached.
    t.delete_volume("vol-a").unwrap();
    let backing = sysfs_backing(dev.name()).unwrap();
    println!("backing_file after deleting the file: {backing:?}");
    assert_eq!(backing, format!("{file} (deleted)"));
    let paths = t.volume_paths(&dev.connection_properties()).unwrap();
    println!("get_volume_paths of the leaked device: {paths:?}");
    let reported = paths.paths[0].wwid.as_ref().unwrap();
    assert_ne!(reported, &t.identity("vol-a").unwrap());
    assert!(reported.as_str().ends_with("%20(deleted)"), "{reported}");
    assert!(
        paths
            .diagnostics
            .iter()
            .any(|d| d.message.contains("deleted")),
        "{paths:?}"
    );
    let violations = t.check();
    println!("check: {violations:#?}");
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].kind, PropertyKind::Leftover);
    assert_eq!(violations[0].volume.as_deref(), Some("vol-a"));
    assert!(
        violations[0].detail.contains(dev.name()),
        "{}",
        violations[0]
    );
    // Drop detaches the leaked device too.
    drop(t);
    assert!(!still_backed_by(dev.name(), &file));
}

#[test]
fn a_second_attachment_of_the_same_file_is_a_leftover() {
    let Some(mut t) = target() else { return };
    let file = t.create_volume("vol-a", MIB).unwrap();
    let file = file.to_str().unwrap().to_owned();
    let dev = t.attach("vol-a").unwrap();
    // Attach the file once more behind the target's back; the guard detaches it.
    struct Extra(String, String);
    impl Drop for Extra {
        fn drop(&mut self) {
            if still_backed_by(&self.0, &self.1) {
                let _ = Command::new("losetup")
                    .args(["-d", &format!("/dev/{}", self.0)])
                    .status();
            }
        }
    }
    let out = Command::new("losetup")
        .args(["--find", "--show", &file])
        .output()
        .unwrap();
    assert!(out.status.success());
    let extra_dev = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let extra = Extra(
        extra_dev.trim_start_matches("/dev/").to_owned(),
        file.clone(),
    );
    assert_ne!(extra.0, dev.name());
    let violations = t.check();
    println!("check with a second attachment: {violations:?}");
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].kind, PropertyKind::Leftover);
    assert!(violations[0].detail.contains(&extra.0));
    // Detaching the volume leaves the second device: still a leftover.
    t.detach("vol-a").unwrap();
    let violations = t.check();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].detail.contains("detached"),
        "{}",
        violations[0]
    );
    drop(extra);
    // `losetup -d` of a device something still holds open (udev's probe of the new device)
    // only marks it for autoclear: the kernel detaches it when the last opener closes it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut violations = t.check();
    while !violations.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        violations = t.check();
    }
    assert_eq!(violations, vec![]);
}

#[test]
fn a_panicking_test_still_detaches_its_devices() {
    if let Some(reason) = LoopTarget::unavailable_reason() {
        println!("skipped: {reason}");
        return;
    }
    let mut seen = None;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut t = LoopTarget::new().unwrap();
        let file = t.create_volume("vol-a", MIB).unwrap();
        let dev = t.attach("vol-a").unwrap();
        seen = Some((dev.name().to_owned(), file.to_str().unwrap().to_owned()));
        panic!("deliberate panic while attached: Drop must still detach");
    }));
    assert!(result.is_err());
    let (name, file) = seen.unwrap();
    assert!(!still_backed_by(&name, &file));
    assert!(!std::path::Path::new(&file).exists());
}

#[test]
fn stale_devices_of_vanished_targets_are_reclaimed() {
    let Some(mut t) = target() else { return };
    let file = t.create_volume("vol-a", MIB).unwrap();
    let file = file.to_str().unwrap().to_owned();
    let dev = t.attach("vol-a").unwrap();
    // As if the process had been killed and its directory cleaned.
    std::fs::remove_dir_all(t.dir()).unwrap();
    assert!(still_backed_by(dev.name(), &file));
    let reclaimed = LoopTarget::reclaim_stale().unwrap();
    println!("reclaimed: {reclaimed:?}");
    assert!(reclaimed.contains(&dev.device), "{reclaimed:?}");
    assert!(!still_backed_by(dev.name(), &file));
    // A live target's devices are never reclaimed.
    let Some(mut live) = target() else { return };
    live.create_volume("vol-b", MIB).unwrap();
    let b = live.attach("vol-b").unwrap();
    let again = LoopTarget::reclaim_stale().unwrap();
    assert!(!again.contains(&b.device), "{again:?}");
    assert_eq!(live.check(), vec![]);
}

#[test]
fn bad_names_and_sizes_are_refused_without_touching_the_kernel() {
    let Some(mut t) = target() else { return };
    for name in ["", "../etc", "a/b", ".x"] {
        assert!(matches!(
            t.create_volume(name, MIB),
            Err(LoopError::BadName { .. })
        ));
    }
    for size in [0, 511, MIB + 1] {
        assert!(matches!(
            t.create_volume("v", size),
            Err(LoopError::BadSize { .. })
        ));
    }
    t.create_volume("v", MIB).unwrap();
    assert!(matches!(
        t.create_volume("v", MIB),
        Err(LoopError::Duplicate { .. })
    ));
    assert!(matches!(t.attach("w"), Err(LoopError::Unknown { .. })));
    t.delete_volume("v").unwrap();
    assert!(matches!(t.attach("v"), Err(LoopError::NotAttached { .. })));
    assert_eq!(t.check(), vec![]);
}
