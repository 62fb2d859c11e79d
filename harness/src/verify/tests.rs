//! The verifier against real agents on loopback sockets (in-process, one thread each).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::*;
use crate::agent::fixture::{SyntheticVolume, write_iscsi_host};
use crate::agent::{Agent, AgentConfig, Token};

/// An agent serving `root` on 127.0.0.1:<free port>, stopped on drop.
struct Running {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn start(root: &Path, token: Option<&str>) -> Running {
    let root: PathBuf = root.to_path_buf();
    let token = token.map(|t| Token::new(t).unwrap());
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut config = AgentConfig::new(root);
            config.listen = "127.0.0.1:0".parse().unwrap();
            config.token = token;
            let agent = Agent::bind(config).await.unwrap();
            addr_tx.send(agent.local_addr()).unwrap();
            agent
                .run(async move {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
        });
    });
    let addr = addr_rx.recv().unwrap();
    Running {
        url: format!("http://{addr}"),
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A host root holding `sessions` × `luns` synthetic volumes.
fn host(sessions: u32, luns: u32) -> (tempfile::TempDir, Vec<SyntheticVolume>) {
    let dir = tempfile::tempdir().unwrap();
    let vols = write_iscsi_host(dir.path(), sessions, luns).unwrap();
    (dir, vols)
}

fn props(v: &SyntheticVolume) -> VolumeProps {
    VolumeProps::from_json(&v.props, None).unwrap()
}

fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

#[test]
fn clean_migration_passes_with_identity_from_the_destination() {
    // The source keeps another volume on the same target (LUN 1); the migrated one is LUN 2.
    let (src, _) = host(1, 1);
    let (dst, vols) = host(1, 2);
    let vol = &vols[1];
    let (s, d) = (start(src.path(), None), start(dst.path(), None));
    let report = verify_migration(&s.url, &d.url, &props(vol), None, &VerifyOptions::default());
    assert_eq!(report.verdict, Verdict::Pass, "{}", report.summary());
    assert_eq!(report.exit_code(), 0);
    assert_eq!(report.volume.wwid.as_ref().unwrap().as_str(), vol.wwid);
    assert_eq!(report.volume.wwid_source, Some(IdentitySource::Destination));
    let dest = report
        .hosts
        .iter()
        .find(|h| h.role == Role::Destination)
        .unwrap();
    assert_eq!(dest.paths.len(), 1);
    assert_eq!(dest.paths[0].path.as_str(), vol.by_path);
    assert_eq!(
        dest.paths[0].device.as_ref().unwrap().as_str(),
        format!("/dev/{}", vol.device)
    );
    let source = report
        .hosts
        .iter()
        .find(|h| h.role == Role::Source)
        .unwrap();
    assert!(source.paths.is_empty() && source.orphans.is_empty());
    // The JSON a gate job reads.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["verdict"], "pass");
    assert_eq!(json["check"], "migration");
    assert_eq!(json["hosts"][1]["paths"][0]["wwid"], vol.wwid.as_str());
}

#[test]
fn leaked_source_detach_fails_naming_path_and_identity() {
    let (src, _) = host(1, 2);
    let (dst, vols) = host(1, 2);
    let vol = &vols[1];
    let (s, d) = (start(src.path(), None), start(dst.path(), None));
    let report = verify_migration(&s.url, &d.url, &props(vol), None, &VerifyOptions::default());
    assert_eq!(report.verdict, Verdict::Fail, "{}", report.summary());
    assert_eq!(report.exit_code(), 1);
    let source = report
        .hosts
        .iter()
        .find(|h| h.role == Role::Source)
        .unwrap();
    assert_eq!(source.verdict, Verdict::Fail);
    assert_eq!(source.paths.len(), 1);
    assert_eq!(source.paths[0].wwid.as_ref().unwrap().as_str(), vol.wwid);
    let reason = report.reasons.join("\n");
    assert!(
        reason.contains(&vol.by_path) && reason.contains(&vol.wwid),
        "{reason}"
    );
    assert!(reason.starts_with("source http://127.0.0.1:"), "{reason}");
}

#[test]
fn stale_link_on_the_source_is_a_leftover_even_without_a_device() {
    let (src, svols) = host(1, 2);
    let (dst, vols) = host(1, 2);
    // The source's disk went away (array unmapped, device deleted) but the link stayed.
    std::fs::remove_file(src.path().join("dev").join(&svols[1].device)).unwrap();
    std::fs::remove_file(src.path().join("dev").join(&svols[0].device)).unwrap();
    let (s, d) = (start(src.path(), None), start(dst.path(), None));
    let report = verify_migration(
        &s.url,
        &d.url,
        &props(&vols[1]),
        None,
        &VerifyOptions::default(),
    );
    assert_eq!(report.verdict, Verdict::Fail, "{}", report.summary());
    let source = report
        .hosts
        .iter()
        .find(|h| h.role == Role::Source)
        .unwrap();
    assert!(source.paths.is_empty());
    assert!(
        source
            .orphans
            .iter()
            .any(|o| o.reason == OrphanReason::StaleLink && o.path.as_str() == vols[1].by_path),
        "{:#?}",
        source.orphans
    );
    // Its by-id link is related through the identity it claims; the other volume's stale
    // links (LUN 1, below) are not held against this one.
    let mut related: Vec<&str> = source.orphans.iter().map(|o| o.path.as_str()).collect();
    related.sort_unstable();
    let by_id = format!("/dev/disk/by-id/scsi-{}", vols[1].wwid);
    // The kernel still has the disk (sysfs), reachable by no link: related by its identity.
    let dev = format!("/dev/{}", vols[1].device);
    assert_eq!(
        related,
        vec![by_id.as_str(), vols[1].by_path.as_str(), dev.as_str()]
    );
}

#[test]
fn destination_under_another_identity_is_cross_talk() {
    let (src, _) = host(1, 1);
    let (dst, vols) = host(1, 2);
    let (s, d) = (start(src.path(), None), start(dst.path(), None));
    let opts = VerifyOptions {
        expected_wwid: Some(Wwid::new(&vols[0].wwid).unwrap()),
        ..VerifyOptions::default()
    };
    let report = verify_migration(&s.url, &d.url, &props(&vols[1]), None, &opts);
    assert_eq!(report.verdict, Verdict::Fail, "{}", report.summary());
    assert!(
        report.reasons.join("\n").contains("cross-talk"),
        "{:?}",
        report.reasons
    );
    assert_eq!(report.volume.wwid_source, Some(IdentitySource::Option));
}

#[test]
fn identity_keys_in_the_properties_are_used_and_checked() {
    let (src, _) = host(1, 1);
    let (dst, vols) = host(1, 2);
    let (s, d) = (start(src.path(), None), start(dst.path(), None));
    let mut raw = vols[1].props.clone();
    raw["data"]["volume_wwid"] = serde_json::Value::String(format!("naa.{}", &vols[1].wwid[1..]));
    let p = VolumeProps::from_json(&raw, None).unwrap();
    let report = verify_migration(&s.url, &d.url, &p, None, &VerifyOptions::default());
    assert_eq!(report.verdict, Verdict::Pass, "{}", report.summary());
    assert_eq!(report.volume.wwid_source, Some(IdentitySource::Properties));
    // Contradicting --wwid: cannot verify.
    let opts = VerifyOptions {
        expected_wwid: Some(Wwid::new(&vols[0].wwid).unwrap()),
        ..VerifyOptions::default()
    };
    let report = verify_migration(&s.url, &d.url, &p, None, &opts);
    assert_eq!(report.verdict, Verdict::Error, "{}", report.summary());
    assert_eq!(report.exit_code(), 2);
}

#[test]
fn missing_destination_attach_fails() {
    let (src, _) = host(1, 1);
    let (dst, _) = host(1, 1);
    let (_, vols) = host(1, 2);
    let (s, d) = (start(src.path(), None), start(dst.path(), None));
    let report = verify_migration(
        &s.url,
        &d.url,
        &props(&vols[1]),
        None,
        &VerifyOptions::default(),
    );
    assert_eq!(report.verdict, Verdict::Fail);
    assert!(
        report.reasons.join("\n").contains("no path"),
        "{:?}",
        report.reasons
    );
}

#[test]
fn unreachable_or_unauthorized_agents_cannot_verify() {
    let (dst, vols) = host(1, 1);
    let d = start(dst.path(), Some("s3cret"));
    let p = props(&vols[0]);
    let dead = closed_port_url();
    let report = verify_migration(
        &dead,
        &d.url,
        &p,
        None,
        &VerifyOptions {
            token: Some("s3cret".into()),
            ..VerifyOptions::default()
        },
    );
    assert_eq!(report.verdict, Verdict::Error, "{}", report.summary());
    assert!(
        report.reasons.join("\n").contains("unreachable"),
        "{:?}",
        report.reasons
    );
    let report = verify_migration(&d.url, &d.url, &p, None, &VerifyOptions::default());
    assert_eq!(report.verdict, Verdict::Error);
    assert!(
        report.reasons.join("\n").contains("unauthorized"),
        "{:?}",
        report.reasons
    );
    let report = verify_detach(
        &["https://127.0.0.1:1".to_owned()],
        &p,
        &VerifyOptions::default(),
    );
    assert_eq!(report.verdict, Verdict::Error);
    assert!(report.reasons.join("\n").contains("https is not supported"));
}

#[test]
fn detach_on_many_hosts_names_the_host_with_leftovers() {
    let (a, _) = host(1, 1);
    let (b, vols) = host(1, 2);
    let (c, _) = host(2, 1);
    let (ra, rb, rc) = (
        start(a.path(), None),
        start(b.path(), None),
        start(c.path(), None),
    );
    let urls = vec![ra.url.clone(), rb.url.clone(), rc.url.clone()];
    let report = verify_detach(&urls, &props(&vols[1]), &VerifyOptions::default());
    assert_eq!(report.verdict, Verdict::Fail, "{}", report.summary());
    let verdicts: Vec<Verdict> = report.hosts.iter().map(|h| h.verdict).collect();
    assert_eq!(verdicts, vec![Verdict::Pass, Verdict::Fail, Verdict::Pass]);
    assert!(
        report.reasons.iter().all(|r| r.contains(&rb.url)),
        "{:?}",
        report.reasons
    );
    let clean = verify_detach(
        &[ra.url.clone(), rc.url.clone()],
        &props(&vols[1]),
        &VerifyOptions::default(),
    );
    assert_eq!(clean.verdict, Verdict::Pass, "{}", clean.summary());
}

#[test]
fn identities_are_normalized() {
    let want = "3600140598d2e10957eb444ab09805555";
    for s in [
        "3600140598d2e10957eb444ab09805555",
        "naa.600140598d2e10957eb444ab09805555",
        "600140598D2E10957EB444AB09805555",
        "0x600140598d2e10957eb444ab09805555",
        " 3600140598d2e10957eb444ab09805555\n",
    ] {
        assert_eq!(normalize_identity(s).unwrap().as_str(), want, "{s}");
    }
    assert!(normalize_identity("../../etc").is_err());
    assert!(normalize_identity("").is_err());
    let bad = serde_json::json!({"driver_volume_type": "iscsi", "data": {
        "target_portal": "10.0.0.1:3260", "target_iqn": "iqn.2010-10.org.x:y", "target_lun": 1,
        "wwid": "a/b"}});
    assert!(matches!(
        VolumeProps::from_json(&bad, None),
        Err(VerifyError::Identity { .. })
    ));
}
