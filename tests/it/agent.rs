//! The path agent (`brick serve`) and the verifier (`brick verify`) as real processes over
//! TCP on loopback: safety rules, and live migration checked only over HTTP.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use brick_connectors::DisconnectOptions;
use brick_harness::agent::fixture::{snapshot, write_iscsi_host};
use brick_harness::{Lab, LabHostSpec};
use brick_sim_target::ArraySpec;
use serde_json::{Value, json};

const BRICK: &str = env!("CARGO_BIN_EXE_brick");

/// A running `brick serve`, killed on drop if not stopped.
struct Served {
    child: Child,
    url: String,
}

impl Served {
    /// Starts `brick serve --root ROOT --listen 127.0.0.1:0 [ARGS]` and reads the bound
    /// address from its first stdout line (bounded wait).
    fn start(root: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(BRICK)
            .arg("serve")
            .arg("--root")
            .arg(root)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("BRICK_LOG", "off")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("brick serve starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining: the agent must be able to write until it exits.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("brick serve did not start: {line:?} {err}");
        };
        Self {
            child,
            url: addr.to_owned(),
        }
    }

    /// SIGTERM, then waits (bounded) for a graceful exit.
    fn stop(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "brick serve ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// `(status, JSON body)` of a request.
fn call(req: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let mut resp = req.expect("the agent answers");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    let body =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}"));
    (status, body)
}

fn brick(args: &[&str]) -> Output {
    Command::new(BRICK)
        .args(args)
        .env("BRICK_LOG", "off")
        .output()
        .expect("brick runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn serve_refuses_unsafe_configurations() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let o = brick(&["serve", "--root", root, "--listen", "0.0.0.0:0"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("--token-file"),
        "{}",
        text(&o.stderr)
    );
    assert!(o.stdout.is_empty(), "must not listen: {}", text(&o.stdout));

    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, " \n").unwrap();
    let o = brick(&[
        "serve",
        "--root",
        root,
        "--listen",
        "0.0.0.0:0",
        "--token-file",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("is empty"), "{}", text(&o.stderr));

    let o = brick(&[
        "serve",
        "--root",
        dir.path().join("missing").to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("missing"), "{}", text(&o.stderr));
}

#[test]
fn agent_over_tcp_is_guarded_and_read_only() {
    let host = tempfile::tempdir().unwrap();
    let vols = write_iscsi_host(host.path(), 2, 2).unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("token");
    std::fs::write(&token_file, "gate-token-0123\n").unwrap();
    let before = snapshot(host.path()).unwrap();
    let served = Served::start(host.path(), &["--token-file", token_file.to_str().unwrap()]);
    let http = client();
    let url = |p: &str| format!("{}{p}", served.url);
    let bearer = "Bearer gate-token-0123";

    let (status, body) = call(http.get(&url("/healthz")).call());
    assert_eq!((status, &body["status"]), (200, &json!("ok")));

    let (status, body) = call(http.get(&url("/v1/orphans")).call());
    assert_eq!(
        (status, &body["error"]),
        (401, &json!("unauthorized")),
        "{body}"
    );
    let (status, body) = call(
        http.get(&url("/v1/orphans"))
            .header("Authorization", "Bearer nope")
            .call(),
    );
    assert_eq!(
        (status, &body["error"]),
        (401, &json!("unauthorized")),
        "{body}"
    );
    let (status, body) = call(
        http.get(&url("/v1/orphans"))
            .header("Authorization", bearer)
            .call(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["orphans"], json!([]));

    let paths_url = url("/v1/iscsi/paths?multipath=true");
    let (status, body) = call(
        http.post(&paths_url)
            .header("Authorization", bearer)
            .send_json(&vols[3].props),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["paths"][0]["path"], vols[3].by_path.as_str());
    assert_eq!(body["paths"][0]["wwid"], vols[3].wwid.as_str());

    // Just over the 64 KiB limit. The agent answers 413 from the Content-Length alone and
    // may close the connection before the client has finished writing the body, so a reset
    // while sending is retried; a 413 must come back within a few tries.
    let big = "x".repeat(64 * 1024 + 1);
    let mut answered = None;
    let mut last_error = String::new();
    for _ in 0..5 {
        match http
            .post(&paths_url)
            .header("Authorization", bearer)
            .send(big.as_str())
        {
            Ok(resp) => {
                answered = Some(call(Ok(resp)));
                break;
            }
            Err(e) => {
                eprintln!("oversized body: transport error ({e}), retrying");
                last_error = e.to_string();
            }
        }
    }
    let (status, body) = answered
        .unwrap_or_else(|| panic!("no answer to an oversized body in 5 tries: {last_error}"));
    assert_eq!(
        (status, &body["error"]),
        (413, &json!("payload_too_large")),
        "{body}"
    );

    let (status, body) = call(
        http.post(&paths_url)
            .header("Authorization", bearer)
            .send("{\"target_"),
    );
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("bad_json")),
        "{body}"
    );

    for hostile in [
        json!({"target_portal": "10.0.1.1:3260", "target_iqn": "iqn.2010-10.org.x:../../../../etc/passwd", "target_lun": 1}),
        json!({"target_portal": "10.0.1.1:3260", "target_iqn": "iqn.2010-10.org.openstack:volume-00001", "target_lun": -1}),
        json!({"target_portal": "10.0.1.1:3260", "target_iqn": "iqn.2010-10.org.openstack:volume-00001", "target_lun": 2.0e21}),
        json!({"target_portal": "10.0.1.1:3260", "target_iqn": "iqn.2010-10.org.openstack:volume-00001", "target_lun": 1, "device_path": "/../../etc/passwd"}),
    ] {
        let (status, body) = call(
            http.post(&url("/v1/iscsi/paths"))
                .header("Authorization", bearer)
                .send_json(&hostile),
        );
        assert_eq!(
            (status, &body["error"]),
            (400, &json!("invalid_properties")),
            "{hostile}: {body}"
        );
    }
    let (status, body) = call(
        http.get(&url("/v1/nvme-over-pigeons/volumes"))
            .header("Authorization", bearer)
            .call(),
    );
    assert_eq!(
        (status, &body["error"]),
        (404, &json!("unsupported_protocol")),
        "{body}"
    );

    let status = served.stop();
    assert!(status.success(), "graceful shutdown failed: {status}");
    assert_eq!(
        before,
        snapshot(host.path()).unwrap(),
        "the agent changed the host tree"
    );
}

/// Writes the properties the array gives `host` for `volume` to a file.
fn props_file(lab: &Lab, volume: &str, host: &str, dir: &Path) -> String {
    let path = dir.join(format!("{volume}-{host}.json"));
    std::fs::write(&path, lab.props_json(volume, host).unwrap().to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

fn verify_migration(
    src: &Served,
    dst: &Served,
    dest_props: &str,
    source_props: &str,
) -> (i32, Value) {
    let o = brick(&[
        "verify",
        "migration",
        "--source",
        &src.url,
        "--dest",
        &dst.url,
        "--props",
        dest_props,
        "--source-props",
        source_props,
        "--json",
    ]);
    let report: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {}{}",
            text(&o.stdout),
            text(&o.stderr)
        )
    });
    (o.status.code().unwrap_or(-1), report)
}

/// Two simulated hosts sharing one simulated array, each served by its own `brick serve`;
/// the harness migrates, the verifier only speaks HTTP.
#[test]
fn live_migration_is_verified_over_http_and_a_leaked_source_is_caught() {
    let roots = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let (src_root, dst_root) = (
        roots.path().join("compute-1"),
        roots.path().join("compute-2"),
    );
    let mut lab = Lab::new(6);
    lab.add_host_at(LabHostSpec::single("compute-1"), &src_root)
        .unwrap();
    lab.add_host_at(LabHostSpec::single("compute-2"), &dst_root)
        .unwrap();
    lab.add_array(ArraySpec::new("array-1", vec!["10.0.0.1:3260".to_owned()]))
        .unwrap();
    let src = Served::start(&src_root, &[]);
    let dst = Served::start(&dst_root, &[]);

    // Clean migration of vol-a: attach on the source, attach on the destination, detach the source.
    lab.create_volume("vol-a", "array-1", 1 << 30).unwrap();
    lab.map("vol-a", "compute-1").unwrap();
    lab.attach("vol-a", "compute-1").unwrap();
    let src_a = props_file(&lab, "vol-a", "compute-1", files.path());
    lab.map("vol-a", "compute-2").unwrap();
    lab.attach("vol-a", "compute-2").unwrap();
    let dest_a = props_file(&lab, "vol-a", "compute-2", files.path());
    lab.detach("vol-a", "compute-1", DisconnectOptions::default(), true)
        .unwrap();
    lab.unmap("vol-a", "compute-1").unwrap();
    // udev removes links asynchronously; a gate job verifies once the hosts have settled.
    lab.settle().unwrap();
    let (code, report) = verify_migration(&src, &dst, &dest_a, &src_a);
    assert_eq!(code, 0, "clean migration not passed: {report:#}");
    assert_eq!(report["verdict"], "pass");
    let wwid_a = report["volume"]["wwid"].as_str().unwrap().to_owned();
    assert!(wwid_a.starts_with('3'), "{report:#}");

    // Leaked migration of vol-b: the source never detaches.
    lab.create_volume("vol-b", "array-1", 1 << 30).unwrap();
    lab.map("vol-b", "compute-1").unwrap();
    lab.attach("vol-b", "compute-1").unwrap();
    let src_b = props_file(&lab, "vol-b", "compute-1", files.path());
    lab.map("vol-b", "compute-2").unwrap();
    lab.attach("vol-b", "compute-2").unwrap();
    let dest_b = props_file(&lab, "vol-b", "compute-2", files.path());
    let (code, report) = verify_migration(&src, &dst, &dest_b, &src_b);
    assert_eq!(code, 1, "leaked source not caught: {report:#}");
    assert_eq!(report["verdict"], "fail");
    let wwid_b = report["volume"]["wwid"].as_str().unwrap().to_owned();
    let source = report["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["role"] == "source")
        .unwrap();
    let leftover = &source["paths"][0];
    assert!(
        leftover["path"]
            .as_str()
            .unwrap()
            .starts_with("/dev/disk/by-path/ip-10.0.0.1:3260-iscsi-"),
        "{source:#}"
    );
    assert_eq!(leftover["wwid"], wwid_b.as_str(), "{source:#}");
    let reasons = report["reasons"].to_string();
    assert!(
        reasons.contains(leftover["path"].as_str().unwrap()) && reasons.contains(&wwid_b),
        "{reasons}"
    );

    // Leaked the other way: the array unmaps the source without a host detach.
    lab.unmap("vol-b", "compute-1").unwrap();
    let (code, report) = verify_migration(&src, &dst, &dest_b, &src_b);
    assert_eq!(code, 1, "unmap without detach not caught: {report:#}");
    assert!(
        report["reasons"].to_string().contains(&wwid_b),
        "{report:#}"
    );

    // The plain detach check on both hosts for vol-a: clean.
    let o = brick(&[
        "verify", "detach", "--host", &src.url, "--props", &src_a, "--json",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );

    assert!(src.stop().success());
    assert!(dst.stop().success());
}

#[test]
fn verify_cannot_verify_without_agents_or_with_bad_properties() {
    let files = tempfile::tempdir().unwrap();
    let props = files.path().join("p.json");
    std::fs::write(
        &props,
        json!({"driver_volume_type": "iscsi", "data": {"target_portal": "10.0.0.1:3260",
            "target_iqn": "iqn.2010-10.org.openstack:vol", "target_lun": 1}})
        .to_string(),
    )
    .unwrap();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let o = brick(&[
        "verify",
        "detach",
        "--host",
        &dead,
        "--props",
        props.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stdout));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["verdict"], "error");
    std::fs::write(
        &props,
        r#"{"driver_volume_type": "iscsi", "data": {"target_lun": -1}}"#,
    )
    .unwrap();
    let o = brick(&[
        "verify",
        "detach",
        "--host",
        &dead,
        "--props",
        props.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("connection properties"),
        "{}",
        text(&o.stderr)
    );
}
