//! The os-brick oracle: OpenStack os-brick's OWN `get_volume_paths` (the real Python library)
//! run on trees materialized by the simulator must give the same answer as `brick paths`.
//!
//! Each test plays attach/detach sequences on a [`Lab`] with our connectors; at every
//! checkpoint, for every volume and both `use_multipath` values, it runs
//! `brick paths --root R --props P [--multipath] --json` and asks `tools/osbrick_oracle.py`
//! (one Python process per test, `--serve` mode) and compares the two path sets. The oracle
//! makes os-brick see R as `/` by redirecting its filesystem calls, and answers the commands it
//! runs (`iscsiadm -m session`) with outputs captured from the simulator for that very tree.
//!
//! Covered: iSCSI (single/multipath, shared target, leaked detach, LUN >= 256, flat
//! addressing, IPv6, dangling links, portal down); FC (single/multipath over two HBAs,
//! LUN >= 256, flat addressing, a platform-prefixed HBA, an HBA in Linkdown, a map that
//! excludes an HBA, leaked detach); NVMe-oF (native multipath on/off, two controllers
//! without native multipath, `src_addr` in the address, properties without `host_nqn`, a
//! shared subsystem, a reused nsid without AEN). Known os-brick quirks are expected
//! exceptions: [`known_quirk`] (os-brick misses paths) and [`known_extra_paths`] (os-brick
//! reports paths that do not lead to the volume).
//!
//! Python: `BRICK_OSBRICK_PYTHON` (CI sets it to `target/osbrick-venv/bin/python`, see
//! `.ci/run`), else `osbrick-venv/bin/python` in the target directory, else `python3`,
//! whichever imports `os_brick`. Without one the tests print why and pass, except under `CI`, where they fail.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use brick_connectors::DisconnectOptions;
use brick_harness::simhost::lock;
use brick_harness::{Lab, LabHostSpec};
use brick_sim_target::{ArraySpec, Fault, IqnMode, Times, UdevAction};
use serde_json::{Value, json};

const BRICK: &str = env!("CARGO_BIN_EXE_brick");

/// The commands os-brick's `get_volume_paths` runs (iSCSI single-path: the session list),
/// captured from the simulator for each tree. FC and NVMe-oF run none; an unexpected command
/// makes the oracle fail loudly rather than guess.
const CAPTURED_COMMANDS: &[&[&str]] = &[&["iscsiadm", "-m", "session"]];

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn script() -> PathBuf {
    workspace().join("tools/osbrick_oracle.py")
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Whether `python` runs and imports os_brick; the reason why not otherwise.
fn usable(python: &Path) -> Result<(), String> {
    match Command::new(python)
        .args(["-W", "ignore", "-c", "import os_brick.initiator.connector"])
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "`{}` cannot import os_brick ({})",
            python.display(),
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("no error message")
        )),
        Err(e) => Err(format!("`{}` does not run: {e}", python.display())),
    }
}

/// The Python that runs the oracle, or `None` (after saying why) when the tests must skip.
fn python() -> Option<PathBuf> {
    let found = if let Some(p) = std::env::var_os("BRICK_OSBRICK_PYTHON") {
        // Explicitly configured: a broken setting is an error, never a skip.
        let p = PathBuf::from(p);
        if let Err(reason) = usable(&p) {
            panic!("BRICK_OSBRICK_PYTHON is set but unusable: {reason}");
        }
        Ok(p)
    } else {
        // CARGO_TARGET_TMPDIR is `<target dir>/tmp`: the venv .ci/run makes is its sibling.
        let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .map_or_else(|| workspace().join("target"), Path::to_path_buf);
        let candidates = [
            target.join("osbrick-venv/bin/python"),
            workspace().join("target/osbrick-venv/bin/python"),
            PathBuf::from("python3"),
        ];
        let mut reasons = Vec::new();
        let mut ok = None;
        for c in candidates {
            match usable(&c) {
                Ok(()) => {
                    ok = Some(c);
                    break;
                }
                Err(r) => reasons.push(r),
            }
        }
        ok.ok_or_else(|| reasons.join("; "))
    };
    match found {
        Ok(p) => Some(p),
        Err(reason) => {
            let msg = format!(
                "os-brick oracle unavailable (BRICK_OSBRICK_PYTHON unset; {reason}); \
                 install it with `python3 -m venv target/osbrick-venv && \
                 target/osbrick-venv/bin/pip install os-brick==7.1.1`"
            );
            assert!(!ci(), "CI is set, the oracle must run: {msg}");
            eprintln!("SKIPPED: {msg}");
            None
        }
    }
}

/// A lab whose host roots live in a directory the test owns, so that a failing comparison can
/// keep everything (tree, props, commands) for the rerun command it prints.
struct Bench {
    lab: Lab,
    python: PathBuf,
    oracle: Oracle,
    dir: Option<tempfile::TempDir>,
    checkpoints: usize,
    /// Comparisons where both sides found at least one path (guards against vacuous passes).
    non_empty: usize,
    /// Comparisons that hit a known os-brick quirk.
    quirks: Vec<String>,
}

/// One question asked to both sides.
struct Case {
    host: String,
    volume: String,
    multipath: bool,
    props: Value,
    props_file: PathBuf,
    commands_file: PathBuf,
}

/// The oracle in `--serve` mode: one job list per line in, one result list per line out.
struct Oracle {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Oracle {
    fn start(python: &Path) -> Self {
        let mut child = Command::new(python)
            .arg(script())
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting the oracle with {}: {e}", python.display()));
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
        }
    }

    fn ask(&mut self, jobs: &[Value]) -> Vec<Value> {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{}", serde_json::to_string(jobs).unwrap()).unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).unwrap();
        assert!(n > 0, "the oracle exited (its stderr is above)");
        let answer: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("oracle output is not JSON ({e}): {line}"));
        let results = answer
            .as_array()
            .unwrap_or_else(|| panic!("the oracle refused the request: {answer}"));
        assert_eq!(results.len(), jobs.len(), "one answer per job");
        results.clone()
    }
}

impl Drop for Oracle {
    fn drop(&mut self) {
        // End of input stops the server; reap it.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

impl Bench {
    fn new(python: PathBuf) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("brick-osbrick-")
            .tempdir_in(brick_harness::lab::scratch_dir())
            .unwrap();
        Self {
            lab: Lab::new(7),
            oracle: Oracle::start(&python),
            python,
            dir: Some(dir),
            checkpoints: 0,
            non_empty: 0,
            quirks: Vec::new(),
        }
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    fn host(&mut self, spec: LabHostSpec) {
        let root = self.dir().join("hosts").join(&spec.sim.name);
        self.lab.add_host_at(spec, &root).unwrap();
    }

    /// The connection properties a Cinder driver would hand over for `volume` on `host`
    /// (kept by the caller, as Nova keeps the connection info: the array may forget them).
    fn props(&self, volume: &str, host: &str) -> Value {
        self.lab.props_json(volume, host).unwrap()
    }

    /// The commands os-brick runs for iSCSI paths, answered by the simulator for `host` now.
    fn commands(&self, host: &str) -> Value {
        let id = self.lab.host_id(host).unwrap();
        let mut world = lock(self.lab.world());
        let mut out = Vec::new();
        for argv in CAPTURED_COMMANDS {
            let argv: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
            let o = world.exec(id, &argv, None);
            out.push(json!({
                "argv": argv,
                "status": o.status,
                "stdout": o.stdout,
                "stderr": o.stderr,
            }));
        }
        Value::Array(out)
    }

    /// Settles the world and compares both sides for every `(volume, props)` on `host`, with
    /// and without multipath. Panics with a full report on the first disagreement.
    fn compare(&mut self, step: &str, host: &str, volumes: &[(&str, &Value)]) {
        self.lab.settle().unwrap();
        self.compare_unsettled(step, host, volumes);
    }

    /// As [`Bench::compare`], on the host tree as it is now (pending events not delivered:
    /// the caller keeps the tree in a transient state and has materialized it).
    fn compare_unsettled(&mut self, step: &str, host: &str, volumes: &[(&str, &Value)]) {
        self.checkpoints += 1;
        let root = self.lab.root(host).unwrap().to_path_buf();
        let case_dir = self.dir().join(format!("case-{:02}", self.checkpoints));
        std::fs::create_dir_all(&case_dir).unwrap();
        let commands = self.commands(host);
        let commands_file = case_dir.join("commands.json");
        std::fs::write(
            &commands_file,
            serde_json::to_string_pretty(&commands).unwrap(),
        )
        .unwrap();

        let mut cases = Vec::new();
        let mut jobs = Vec::new();
        for (volume, props) in volumes {
            let props_file = case_dir.join(format!("{volume}.json"));
            std::fs::write(&props_file, serde_json::to_string_pretty(props).unwrap()).unwrap();
            for multipath in [false, true] {
                jobs.push(json!({
                    "root": root,
                    "protocol": oracle_protocol(props),
                    "props": props,
                    "multipath": multipath,
                    "commands": commands,
                }));
                cases.push(Case {
                    host: host.to_owned(),
                    volume: (*volume).to_owned(),
                    multipath,
                    props: (*props).clone(),
                    props_file: props_file.clone(),
                    commands_file: commands_file.clone(),
                });
            }
        }
        let answers = self.oracle_batch(&case_dir, &jobs);
        for (case, answer) in cases.iter().zip(answers) {
            let ours = brick_paths(&root, case);
            let theirs = match answer {
                Ok(p) => p,
                Err(e) => self.fail(step, &root, case, &ours, None, &format!("oracle: {e}")),
            };
            if let Some(quirk) = known_quirk(case) {
                // os-brick cannot see these paths; ours must, and os-brick must still not.
                if !theirs.is_empty() || ours.is_empty() {
                    self.fail(
                        step,
                        &root,
                        case,
                        &ours,
                        Some(&theirs),
                        &format!(
                            "expected the known os-brick quirk ({quirk}): os-brick finds \
                             nothing while brick finds the paths. If os-brick was fixed, \
                             drop the exception in known_quirk()."
                        ),
                    );
                }
                self.quirks.push(format!(
                    "{step}: {} multipath={}: {quirk}",
                    case.volume, case.multipath
                ));
                continue;
            }
            if ours != theirs {
                if let Some(quirk) = known_extra_paths(&root, case, &ours, &theirs) {
                    self.quirks.push(format!(
                        "{step}: {} multipath={}: {quirk}",
                        case.volume, case.multipath
                    ));
                    continue;
                }
                self.fail(step, &root, case, &ours, Some(&theirs), "path sets differ");
            }
            if !ours.is_empty() {
                self.non_empty += 1;
            }
        }
    }

    fn oracle_batch(
        &mut self,
        case_dir: &Path,
        jobs: &[Value],
    ) -> Vec<Result<BTreeSet<String>, String>> {
        // Kept for `osbrick_oracle.py --batch` by hand.
        let batch = case_dir.join("batch.json");
        std::fs::write(&batch, serde_json::to_string(jobs).unwrap()).unwrap();
        self.oracle
            .ask(jobs)
            .into_iter()
            .map(|r| match r.get("paths").and_then(Value::as_array) {
                Some(paths) => Ok(paths
                    .iter()
                    .map(|p| p.as_str().unwrap_or_default().to_owned())
                    .collect()),
                None => Err(r["error"].as_str().unwrap_or("no answer").to_owned()),
            })
            .collect()
    }

    /// Keeps the scratch directory and panics with everything needed to reproduce by hand.
    fn fail(
        &mut self,
        step: &str,
        root: &Path,
        case: &Case,
        ours: &BTreeSet<String>,
        theirs: Option<&BTreeSet<String>>,
        why: &str,
    ) -> ! {
        let mut r = String::new();
        let _ = writeln!(
            r,
            "os-brick oracle disagreement at `{step}`: volume {} on {} (multipath={}): {why}",
            case.volume, case.host, case.multipath
        );
        let _ = writeln!(r, "\n{:<8} {:<8} path", "brick", "os-brick");
        let mut all: BTreeSet<&String> = ours.iter().collect();
        if let Some(t) = theirs {
            all.extend(t.iter());
        }
        for p in &all {
            let a = if ours.contains(*p) { "yes" } else { "-" };
            let b = match theirs {
                Some(t) if t.contains(*p) => "yes",
                Some(_) => "-",
                None => "?",
            };
            let _ = writeln!(r, "{a:<8} {b:<8} {p}");
        }
        if all.is_empty() {
            let _ = writeln!(r, "(both empty)");
        }
        let _ = writeln!(r, "\n/dev/disk of {}:", case.host);
        for line in brick_harness::report::listing(root).lines() {
            if line.starts_with("/dev/disk/") {
                let _ = writeln!(r, "  {line}");
            }
        }
        let _ = writeln!(
            r,
            "\nprops ({}):\n{}",
            case.props_file.display(),
            serde_json::to_string_pretty(&case.props).unwrap_or_default()
        );
        if let Ok(c) = std::fs::read_to_string(&case.commands_file) {
            let _ = writeln!(
                r,
                "\ncanned commands ({}):\n{c}",
                case.commands_file.display()
            );
        }
        let mp = if case.multipath { " --multipath" } else { "" };
        let _ = writeln!(
            r,
            "\nrerun by hand (files kept):\n  {BRICK} paths --root {} --props {}{mp} --json\n  \
             {} {} --root {} --protocol {} --props {}{mp} --commands {} --trace",
            root.display(),
            case.props_file.display(),
            self.python.display(),
            script().display(),
            root.display(),
            oracle_protocol(&case.props),
            case.props_file.display(),
            case.commands_file.display(),
        );
        if let Some(dir) = self.dir.take() {
            let _ = dir.keep();
        }
        panic!("{r}");
    }

    /// Asserts that the run compared something real.
    fn finish(&self, min_non_empty: usize) {
        assert!(
            self.non_empty >= min_non_empty,
            "only {} comparisons with paths on both sides, expected at least {min_non_empty}",
            self.non_empty
        );
    }
}

/// The oracle's protocol name for properties wrapped as a Cinder driver emits them.
fn oracle_protocol(props: &Value) -> &'static str {
    match props["driver_volume_type"].as_str() {
        Some("fibre_channel") => "fc",
        Some("nvmeof") => "nvmeof",
        _ => "iscsi",
    }
}

/// `brick paths` for a case, as a set of host paths.
fn brick_paths(root: &Path, case: &Case) -> BTreeSet<String> {
    let mut cmd = Command::new(BRICK);
    cmd.arg("paths")
        .arg("--root")
        .arg(root)
        .arg("--props")
        .arg(&case.props_file)
        .arg("--json")
        .env("BRICK_LOG", "off");
    if case.multipath {
        cmd.arg("--multipath");
    }
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "brick paths failed for {}: {}",
        case.volume,
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap().to_owned())
        .collect()
}

/// os-brick behaviours where it is os-brick, not brick, that misses the paths.
///
/// iSCSI without multipath with an `addressing_mode` that transforms the LUN (SAM3-flat, or
/// SAM2 for LUN >= 256): `_get_potential_volume_paths` iterates `_iterate_all_targets`, whose
/// per-target props already carry the transformed LUN *and* still the `addressing_mode`, then
/// `_get_device_path` calls `ISCSIConnector._get_all_targets` again, which transforms the LUN a
/// second time (1 -> 16385 -> 32769): the by-path name it looks for never exists.
fn known_quirk(case: &Case) -> Option<&'static str> {
    // FC agrees on transformed LUNs (`fc_flat_addressing_agrees`).
    if oracle_protocol(&case.props) != "iscsi" {
        return None;
    }
    let data = case.props.get("data").unwrap_or(&case.props);
    let mode = data.get("addressing_mode").and_then(Value::as_str)?;
    let lun = data.get("target_lun").and_then(Value::as_u64).unwrap_or(0);
    let transforms = mode == "SAM3-flat" || (mode == "SAM2" && lun >= 256);
    (transforms && !case.multipath)
        .then_some("iSCSI single-path get_volume_paths applies addressing_mode twice")
}

/// os-brick behaviours where os-brick reports paths that brick rightly leaves out (NVMe-oF):
///
/// - with a `device_path` in the properties (Nova adds it after an attach) os-brick returns
///   exactly that path, unchecked, even when it is gone or now another namespace; brick
///   reports the namespace found by identity (and a diagnostic about `device_path`);
/// - os-brick finds a namespace's head name under the controller in sysfs and returns
///   `/dev/<head>` without checking that the node exists (a container with a partial `/dev`,
///   a node removed by hand); brick reports no path for it (with a diagnostic).
fn known_extra_paths(
    root: &Path,
    case: &Case,
    ours: &BTreeSet<String>,
    theirs: &BTreeSet<String>,
) -> Option<&'static str> {
    if oracle_protocol(&case.props) != "nvmeof" {
        return None;
    }
    let data = case.props.get("data").unwrap_or(&case.props);
    if let Some(dp) = data.get("device_path").and_then(Value::as_str)
        && theirs.len() == 1
        && theirs.contains(dp)
        && !ours.contains(dp)
        // An existing device_path that brick misses entirely would be brick's bug.
        && (!ours.is_empty() || !root.join(dp.trim_start_matches('/')).exists())
    {
        return Some("NVMe-oF get_volume_paths returns the properties' device_path unchecked");
    }
    if !ours.is_subset(theirs) {
        return None;
    }
    let missing_node = |p: &String| {
        p.starts_with("/dev/nvme")
            && std::fs::symlink_metadata(root.join(p.trim_start_matches('/'))).is_err()
    };
    theirs
        .difference(ours)
        .all(missing_node)
        .then_some("NVMe-oF get_volume_paths reports /dev/<head> without checking the node exists")
}

#[test]
fn single_path_attach_detach_agrees() {
    let Some(py) = python() else { return };
    let mut b = Bench::new(py);
    b.host(LabHostSpec::single("compute-1"));
    b.lab
        .add_array(ArraySpec::new("array-1", vec!["10.0.2.2:3260".into()]))
        .unwrap();
    for v in ["A", "B"] {
        b.lab.create_volume(v, "array-1", 1 << 30).unwrap();
        b.lab.map(v, "compute-1").unwrap();
    }
    let (a, bp) = (b.props("A", "compute-1"), b.props("B", "compute-1"));
    b.compare("nothing attached", "compute-1", &[("A", &a), ("B", &bp)]);
    b.lab.attach("A", "compute-1").unwrap();
    b.compare("A attached", "compute-1", &[("A", &a), ("B", &bp)]);
    b.lab.attach("B", "compute-1").unwrap();
    b.compare("A and B attached", "compute-1", &[("A", &a), ("B", &bp)]);
    b.lab
        .detach("A", "compute-1", DisconnectOptions::default(), true)
        .unwrap();
    b.compare("A detached", "compute-1", &[("A", &a), ("B", &bp)]);
    b.finish(4);
}

#[test]
fn multipath_over_two_portals_agrees() {
    let Some(py) = python() else { return };
    let mut b = Bench::new(py);
    b.host(LabHostSpec::multipath("compute-1"));
    // A host configured single-path attaching the same multi-portal properties.
    b.host(LabHostSpec::single("compute-2"));
    let portals = vec!["10.0.2.2:3260".into(), "10.0.3.2:3260".into()];
    b.lab.add_array(ArraySpec::new("array-1", portals)).unwrap();
    b.lab.create_volume("A", "array-1", 1 << 30).unwrap();
    b.lab.map("A", "compute-1").unwrap();
    b.lab.map("A", "compute-2").unwrap();
    let a1 = b.props("A", "compute-1");
    let a2 = b.props("A", "compute-2");
    b.lab.attach("A", "compute-1").unwrap();
    b.compare("A attached multipath", "compute-1", &[("A", &a1)]);
    b.lab.attach("A", "compute-2").unwrap();
    b.compare("A attached single-path", "compute-2", &[("A", &a2)]);
    b.lab
        .detach("A", "compute-1", DisconnectOptions::default(), true)
        .unwrap();
    b.compare("A detached multipath", "compute-1", &[("A", &a1)]);
    b.finish(4);
}

#[test]
fn shared_target_after_detaching_one_lun_agrees() {
    let Some(py) = python() else { return };
    let mut b = Bench::new(py);
    b.host(LabHostSpec::single("compute-1"));
    b.host(LabHostSpec::multipath("compute-2"));
    let mut spec = ArraySpec::new(
        "array-1",
        vec!["10.0.2.2:3260".into(), "10.0.3.2:3260".into()],
    );
    spec.iqn_mode = IqnMode::Shared {
        iqn: "iqn.2010-10.org.openstack:shared".into(),
    };
    b.lab.add_array(spec).unwrap();
    for host in ["compute-1", "compute-2"] {
        for v in ["A", "B"] {
            if host == "compute-1" {
                b.lab.create_volume(v, "array-1", 1 << 30).unwrap();
            }
            b.lab.map(v, host).unwrap();
        }
        let (a, bp) = (b.props("A", host), b.props("B", host));
        b.lab.attach("A", host).unwrap();
        b.lab.attach("B", host).unwrap();
        b.compare("A and B on one target", host, &[("A", &a), ("B", &bp)]);
        b.lab
            .detach("A", host, DisconnectOptions::default(), true)
            .unwrap();
        b.compare("A detached, B kept", host, &[("A", &a), ("B", &bp)]);
        b.lab
            .detach("B", host, DisconnectOptions::default(), true)
            .unwrap();
        b.compare("both detached", host, &[("A", &a), ("B", &bp)]);
    }
    b.finish(6);
}

#[test]
fn leaked_detach_agrees() {
    let Some(py) = python() else { return };
    let mut b = Bench::new(py);
    b.host(LabHostSpec::single("compute-1"));
    let mut spec = ArraySpec::new("array-1", vec!["10.0.2.2:3260".into()]);
    spec.iqn_mode = IqnMode::Shared {
        iqn: "iqn.2010-10.org.openstack:shared".into(),
    };
    b.lab.add_array(spec).unwrap();
    b.lab.create_volume("A", "array-1", 1 << 30).unwrap();
    b.lab.map("A", "compute-1").unwrap();
    let a = b.props("A", "compute-1");
    b.lab.attach("A", "compute-1").unwrap();
    b.lab.delete("A").unwrap();
    b.compare("A deleted without detach", "compute-1", &[("A", &a)]);
    b.lab.create_volume("B", "array-1", 1 << 30).unwrap();
    b.lab.map("B", "compute-1").unwrap();
    let bp = b.props("B", "compute-1");
    assert_eq!(
        a["data"]["target_lun"], bp["data"]["target_lun"],
        "B reuses A's LUN"
    );
    // Both must report the leftover path for B's properties (it leads to A's device).
    b.compare("B mapped on A's LUN", "compute-1", &[("A", &a), ("B", &bp)]);
    b.finish(2);
}

#[test]
fn lun_256_and_above_agrees() {
    let Some(py) = python() else { return };
    let mut b = Bench::new(py);
    b.host(LabHostSpec::single("compute-1"));
    b.host(LabHostSpec::multipath("compute-2"));
    let mut spec = ArraySpec::new(
        "array-1",
        vec!["10.0.2.2:3260".into(), "10.0.3.2:3260".into()],
    );
    spec.first_lun = 255;
    spec.iqn_mode = IqnMode::Shared {
        iqn: "iqn.2010-10.org.openstack:shared".into(),
    };
    b.lab.add_array(spec).unwrap();
    for host in ["compute-1", "compute-2"] {
        let mut vols = Vec::new();
        for v in ["A", "B", "C"] {
            if host == "compute-1" {
                b.lab.create_volume(v, "array-1", 1 << 30).unwrap();
            }
            b.lab.map(v, host).unwrap();
            let p = b.props(v, host);
            b.lab.attach(v, host).unwrap();
            vols.push((v, p));
        }
        let luns: Vec<&Value> = vols.iter().map(|(_, p)| &p["data"]["target_lun"]).collect();
        assert_eq!(luns, [&json!(255), &json!(256), &json!(257)]);
        let refs: Vec<(&str, &Value)> = vols.iter().map(|(v, p)| (*v, p)).collect();
        b.compare("LUNs 255, 256, 257 attached", host, &refs);
    }
    b.finish(6);
}

#[test]
fn flat_addressing_agrees_except_the_known_os_brick_quirk() {
    let Some(py) = python() else { return };
    let mut b = Bench::new(py);
    b.host(LabHostSpec::single("compute-1"));
    let mut spec = ArraySpec::new("array-1", vec!["10.0.2.2:3260".into()]);
    spec.flat_addressing = true;
    b.lab.add_array(spec).unwrap();
    b.lab.create_volume("A", "array-1", 1 << 30).unwrap();
    b.lab.map("A", "compute-1").unwrap();
    let a = b.props("A", "compute-1");
    assert_eq!(a["data"]["addressing_mode"], "SAM3-flat");
    b.lab.attach("A", "compute-1").unwrap();
    b.compare("SAM3-flat LUN attached", "compute-1", &[("A", &a)]);
    b.finish(1);
    assert_eq!(b.quirks.len(), 1, "{:?}", b.quirks);
}

#[test]
fn ipv6_portal_agrees() {
    let Some(py) = python() else { return };
    let mut b = Bench::new(py);
    b.host(LabHostSpec::single("compute-1"));
    b.lab
        .add_array(ArraySpec::new("array-1", vec!["[fd00::2]:3260".into()]))
        .unwrap();
    b.lab.create_volume("A", "array-1", 1 << 30).unwrap();
    b.lab.map("A", "compute-1").unwrap();
    let a = b.props("A", "compute-1");
    b.lab.attach("A", "compute-1").unwrap();
    b.compare("IPv6 portal attached", "compute-1", &[("A", &a)]);
    b.finish(2);
}

#[test]
fn dangling_links_after_lost_udev_removes_agree() {
    let Some(py) = python() else { return };
    let mut b = Bench::new(py);
    b.host(LabHostSpec::single("compute-1"));
    b.lab
        .add_array(ArraySpec::new("array-1", vec!["10.0.2.2:3260".into()]))
        .unwrap();
    b.lab.create_volume("A", "array-1", 1 << 30).unwrap();
    b.lab.map("A", "compute-1").unwrap();
    let a = b.props("A", "compute-1");
    b.lab.attach("A", "compute-1").unwrap();
    b.compare("A attached", "compute-1", &[("A", &a)]);
    let host = b.lab.host_id("compute-1").unwrap();
    b.lab
        .inject(Fault::UdevLost {
            host,
            action: UdevAction::Remove,
            times: Times::Always,
        })
        .unwrap();
    b.lab
        .detach("A", "compute-1", DisconnectOptions::default(), true)
        .unwrap();
    b.lab.settle().unwrap();
    let root = b.lab.root("compute-1").unwrap();
    let links: Vec<_> = std::fs::read_dir(root.join("dev/disk/by-path"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        links.iter().any(|l| l.is_symlink() && !l.exists()),
        "the fault must leave a dangling by-path link: {links:?}"
    );
    // A link whose device is gone is not a path, for either side.
    b.compare("A detached, udev remove lost", "compute-1", &[("A", &a)]);
    b.finish(2);
}

#[test]
fn portal_down_on_a_multipath_host_agrees() {
    let Some(py) = python() else { return };
    let mut b = Bench::new(py);
    b.host(LabHostSpec::multipath("compute-1"));
    let portals = vec!["10.0.2.2:3260".into(), "10.0.3.2:3260".into()];
    b.lab.add_array(ArraySpec::new("array-1", portals)).unwrap();
    b.lab.create_volume("A", "array-1", 1 << 30).unwrap();
    b.lab.map("A", "compute-1").unwrap();
    let a = b.props("A", "compute-1");
    b.lab.attach("A", "compute-1").unwrap();
    let host = b.lab.host_id("compute-1").unwrap();
    b.lab
        .inject(Fault::PortalDown {
            host,
            portal: "10.0.3.2:3260".into(),
        })
        .unwrap();
    b.compare("one portal down", "compute-1", &[("A", &a)]);
    b.finish(2);
}

// ---------------------------------------------------------------------- Fibre Channel

mod fc {
    use super::*;
    use brick_sim_target::{FcHbaSpec, FcPortState, FcTargetPort};

    pub(super) const HBA1: u64 = 0x2100_0024_ff7c_0001;
    pub(super) const HBA2: u64 = 0x2100_0024_ff7c_0002;
    const P1: u64 = 0x5006_0160_9020_3181;
    const P2: u64 = 0x5006_0161_9020_3181;

    /// An FC host: HBA1 on fabric a (PCI 05:00.2), HBA2 on fabric b (05:00.3) if `two`.
    pub(super) fn host(name: &str, multipath: bool, two: bool, platform: bool) -> LabHostSpec {
        let mut spec = if multipath {
            LabHostSpec::multipath(name)
        } else {
            LabHostSpec::single(name)
        };
        let mut h1 = FcHbaSpec::new(HBA1, "a", "0000:05:00.2");
        if platform {
            h1 = h1.behind_platform("smb/smb:motherboard/80040000000.peu0-c0");
        }
        spec.sim = spec.sim.with_fc_hba(h1);
        if two {
            spec.sim = spec
                .sim
                .with_fc_hba(FcHbaSpec::new(HBA2, "b", "0000:05:00.3"));
        }
        spec
    }

    /// An FC array with a port on each fabric.
    pub(super) fn array(first_lun: u64) -> ArraySpec {
        let mut spec = ArraySpec::fc(
            "array-1",
            vec![FcTargetPort::new(P1, "a"), FcTargetPort::new(P2, "b")],
        );
        spec.first_lun = first_lun;
        spec
    }

    /// Creates (once) and maps volumes to `host`, zones it, returns their properties.
    pub(super) fn setup(b: &mut Bench, host: &str, vols: &[&str], create: bool) -> Vec<Value> {
        b.lab.zone(host, "array-1").unwrap();
        vols.iter()
            .map(|v| {
                if create {
                    b.lab.create_volume(v, "array-1", 1 << 30).unwrap();
                }
                b.lab.map(v, host).unwrap();
                b.props(v, host)
            })
            .collect()
    }

    #[test]
    fn fc_single_path_attach_detach_agrees() {
        let Some(py) = python() else { return };
        let mut b = Bench::new(py);
        b.host(host("compute-1", false, false, false));
        b.lab.add_array(array(1)).unwrap();
        let p = setup(&mut b, "compute-1", &["A", "B"], true);
        let vols = [("A", &p[0]), ("B", &p[1])];
        b.compare("nothing attached", "compute-1", &vols);
        b.lab.attach("A", "compute-1").unwrap();
        b.compare("A attached", "compute-1", &vols);
        b.lab.attach("B", "compute-1").unwrap();
        b.compare("A and B attached", "compute-1", &vols);
        b.lab
            .detach("A", "compute-1", DisconnectOptions::default(), true)
            .unwrap();
        b.compare("A detached", "compute-1", &vols);
        b.finish(4);
    }

    #[test]
    fn fc_multipath_over_two_hbas_agrees() {
        let Some(py) = python() else { return };
        let mut b = Bench::new(py);
        b.host(host("compute-1", true, true, false));
        // The same two-HBA host configured single-path.
        b.host(host("compute-2", false, true, false));
        b.lab.add_array(array(1)).unwrap();
        let a1 = setup(&mut b, "compute-1", &["A"], true).remove(0);
        let a2 = setup(&mut b, "compute-2", &["A"], false).remove(0);
        b.lab.attach("A", "compute-1").unwrap();
        b.compare("A attached multipath", "compute-1", &[("A", &a1)]);
        b.lab.attach("A", "compute-2").unwrap();
        b.compare("A attached single-path", "compute-2", &[("A", &a2)]);
        b.lab
            .detach("A", "compute-1", DisconnectOptions::default(), true)
            .unwrap();
        b.compare("A detached multipath", "compute-1", &[("A", &a1)]);
        b.finish(4);
    }

    #[test]
    fn fc_lun_256_and_above_agrees() {
        let Some(py) = python() else { return };
        let mut b = Bench::new(py);
        b.host(host("compute-1", false, false, false));
        b.host(host("compute-2", true, true, false));
        b.lab.add_array(array(255)).unwrap();
        for (host, create) in [("compute-1", true), ("compute-2", false)] {
            let p = setup(&mut b, host, &["A", "B", "C"], create);
            let luns: Vec<&Value> = p.iter().map(|p| &p["data"]["target_lun"]).collect();
            assert_eq!(luns, [&json!(255), &json!(256), &json!(257)]);
            for v in ["A", "B", "C"] {
                b.lab.attach(v, host).unwrap();
            }
            let vols = [("A", &p[0]), ("B", &p[1]), ("C", &p[2])];
            b.compare("LUNs 255, 256, 257 attached", host, &vols);
        }
        b.finish(6);
    }

    #[test]
    fn fc_platform_prefixed_hba_agrees() {
        let Some(py) = python() else { return };
        let mut b = Bench::new(py);
        b.host(host("compute-1", false, true, true));
        b.lab.add_array(array(1)).unwrap();
        let a = setup(&mut b, "compute-1", &["A"], true).remove(0);
        let dev = b.lab.attach("A", "compute-1").unwrap();
        assert!(
            dev.path
                .as_str()
                .contains("/platform-80040000000.peu0-c0-pci-"),
            "{dev:?}"
        );
        b.compare(
            "A attached through a platform HBA",
            "compute-1",
            &[("A", &a)],
        );
        b.finish(2);
    }

    #[test]
    fn fc_offline_hba_agrees() {
        // os-brick's get_volume_paths looks through every HBA, whatever its port state; so
        // does ours (a blocked path is still a path until the kernel removes it).
        let Some(py) = python() else { return };
        let mut b = Bench::new(py);
        b.host(host("compute-1", true, true, false));
        b.lab.add_array(array(1)).unwrap();
        let a = setup(&mut b, "compute-1", &["A"], true).remove(0);
        b.lab.attach("A", "compute-1").unwrap();
        let id = b.lab.host_id("compute-1").unwrap();
        lock(b.lab.world())
            .set_hba_port_state(id, HBA2, FcPortState::Linkdown)
            .unwrap();
        // Compared without settling past dev_loss_tmo first: the blocked path still exists.
        lock(b.lab.world()).advance(std::time::Duration::from_secs(1));
        b.lab.sim_host("compute-1").unwrap().sync().unwrap();
        b.compare_unsettled("HBA2 Linkdown, path blocked", "compute-1", &[("A", &a)]);
        let root = b.lab.root("compute-1").unwrap();
        assert!(
            std::fs::read_dir(root.join("dev/disk/by-path"))
                .unwrap()
                .any(|e| e.unwrap().file_name().to_string_lossy().contains("05:00.3")),
            "the blocked path through HBA2 is still there"
        );
        b.compare("HBA2 Linkdown past dev_loss_tmo", "compute-1", &[("A", &a)]);
        b.finish(4);
    }
    #[test]
    fn fc_leaked_detach_and_an_excluded_hba_agree() {
        let Some(py) = python() else { return };
        let mut b = Bench::new(py);
        b.host(host("compute-1", true, true, false));
        b.lab.add_array(array(1)).unwrap();
        let a = setup(&mut b, "compute-1", &["A"], true).remove(0);
        b.lab.attach("A", "compute-1").unwrap();
        // The same volume with a map that excludes HBA2: its path still exists and both
        // report it (brick with a diagnostic); os-brick ignores the map here.
        let mut narrow = a.clone();
        let itmap = narrow["data"]["initiator_target_map"]
            .as_object_mut()
            .unwrap();
        itmap.remove(&format!("{HBA2:016x}"));
        b.compare(
            "A attached, map without HBA2",
            "compute-1",
            &[("A", &a), ("A-narrow", &narrow)],
        );
        b.lab.delete("A").unwrap();
        let bp = setup(&mut b, "compute-1", &["B"], true).remove(0);
        assert_eq!(a["data"]["target_lun"], bp["data"]["target_lun"]);
        b.compare(
            "B on A's LUN, A never detached",
            "compute-1",
            &[("A", &a), ("B", &bp)],
        );
        b.finish(8);
    }

    #[test]
    fn fc_flat_addressing_agrees() {
        let Some(py) = python() else { return };
        let mut b = Bench::new(py);
        b.host(host("compute-1", false, false, false));
        b.host(host("compute-2", true, true, false));
        let mut spec = array(1);
        spec.flat_addressing = true;
        b.lab.add_array(spec).unwrap();
        let a1 = setup(&mut b, "compute-1", &["A"], true).remove(0);
        let a2 = setup(&mut b, "compute-2", &["A"], false).remove(0);
        assert_eq!(a1["data"]["addressing_mode"], "SAM3-flat");
        b.lab.attach("A", "compute-1").unwrap();
        b.lab.attach("A", "compute-2").unwrap();
        b.compare("SAM3-flat LUN attached", "compute-1", &[("A", &a1)]);
        b.compare(
            "SAM3-flat LUN attached multipath",
            "compute-2",
            &[("A", &a2)],
        );
        b.finish(4);
        assert!(b.quirks.is_empty(), "{:?}", b.quirks);
    }
}

// ---------------------------------------------------------------------- NVMe-oF

mod nvme {
    use super::*;
    use brick_sim_target::{ArrayTransport, NvmePort};

    /// An NVMe host: native multipath on or off, `src_addr` in controller addresses or not.
    fn host(name: &str, multipath: bool, native: bool, src_addr: bool) -> LabHostSpec {
        let mut spec = if multipath {
            LabHostSpec::multipath(name)
        } else {
            LabHostSpec::single(name)
        };
        spec.sim = spec.sim.with_nvme();
        let n = spec.sim.nvme.as_mut().unwrap();
        n.native_multipath = native;
        n.src_addr = src_addr;
        spec
    }

    fn array(ports: usize, shared: bool, aen: bool) -> ArraySpec {
        let ports = [("10.0.0.1", 4420), ("10.0.1.1", 4420)]
            .iter()
            .take(ports)
            .map(|(a, p)| NvmePort::tcp(*a, *p))
            .collect();
        let mut spec = ArraySpec::nvme("array-1", ports);
        if shared {
            spec.iqn_mode = IqnMode::Shared {
                iqn: "nqn.2010-10.org.openstack:shared".into(),
            };
        }
        if let ArrayTransport::Nvme(n) = &mut spec.transport {
            n.aen = aen;
        }
        spec
    }

    fn setup(b: &mut Bench, host: &str, vols: &[&str], create: bool) -> Vec<Value> {
        vols.iter()
            .map(|v| {
                if create {
                    b.lab.create_volume(v, "array-1", 1 << 30).unwrap();
                }
                b.lab.map(v, host).unwrap();
                b.props(v, host)
            })
            .collect()
    }

    #[test]
    fn nvme_native_multipath_on_and_off_agrees() {
        let Some(py) = python() else { return };
        let mut b = Bench::new(py);
        b.host(host("mp-on", true, true, true));
        b.host(host("mp-off", true, false, true));
        b.host(host("single", false, true, true));
        b.lab.add_array(array(2, false, true)).unwrap();
        let mut create = true;
        for h in ["mp-on", "mp-off", "single"] {
            let a = setup(&mut b, h, &["A"], create).remove(0);
            create = false;
            b.compare("nothing attached", h, &[("A", &a)]);
            b.lab.attach("A", h).unwrap();
            b.compare("A attached", h, &[("A", &a)]);
            b.lab
                .detach("A", h, DisconnectOptions::default(), true)
                .unwrap();
            b.compare("A detached", h, &[("A", &a)]);
        }
        b.finish(6);
    }

    #[test]
    fn nvme_two_controllers_without_native_multipath_agree() {
        let Some(py) = python() else { return };
        let mut b = Bench::new(py);
        b.host(host("compute-1", true, false, true));
        b.lab.add_array(array(2, false, true)).unwrap();
        let a = setup(&mut b, "compute-1", &["A"], true).remove(0);
        b.lab.attach("A", "compute-1").unwrap();
        // Another process connects the second port: a second controller, its own disk.
        let id = b.lab.host_id("compute-1").unwrap();
        let nqn = a["data"]["target_nqn"].as_str().unwrap();
        let argv: Vec<String> = [
            "nvme", "connect", "-t", "tcp", "-a", "10.0.1.1", "-s", "4420", "-n", nqn,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        assert_eq!(lock(b.lab.world()).exec(id, &argv, None).status, 0);
        b.compare("A through two controllers", "compute-1", &[("A", &a)]);
        let root = b.lab.root("compute-1").unwrap();
        assert!(root.join("dev/nvme1n1").exists());
        let ours = b.lab.volume_paths("A", "compute-1").unwrap();
        assert_eq!(ours.paths.len(), 2, "nvme0n1 and nvme1n1: {ours:?}");
        b.finish(2);
    }

    #[test]
    fn nvme_src_addr_in_the_controller_address_agrees() {
        let Some(py) = python() else { return };
        let mut b = Bench::new(py);
        b.host(host("with-src", false, true, true));
        b.host(host("without-src", false, true, false));
        b.lab.add_array(array(1, false, true)).unwrap();
        let mut create = true;
        for h in ["with-src", "without-src"] {
            let a = setup(&mut b, h, &["A"], create).remove(0);
            create = false;
            b.lab.attach("A", h).unwrap();
            let address = std::fs::read_to_string(
                b.lab
                    .root(h)
                    .unwrap()
                    .join("sys/class/nvme-fabrics/ctl/nvme0/address"),
            )
            .unwrap();
            assert_eq!(address.contains("src_addr="), h == "with-src", "{address}");
            // Without host_nqn in the properties both read /etc/nvme/hostnqn.
            let mut no_hostnqn = a.clone();
            no_hostnqn["data"]
                .as_object_mut()
                .unwrap()
                .remove("host_nqn");
            b.compare("A attached", h, &[("A", &a), ("A-no-hostnqn", &no_hostnqn)]);
        }
        b.finish(8);
    }

    #[test]
    fn nvme_shared_subsystem_and_leaked_namespace_agree() {
        let Some(py) = python() else { return };
        let mut b = Bench::new(py);
        b.host(host("compute-1", false, true, true));
        // No AEN: a namespace reused on the array keeps its old identity on the host.
        b.lab.add_array(array(1, true, false)).unwrap();
        let p = setup(&mut b, "compute-1", &["A", "B"], true);
        b.lab.attach("A", "compute-1").unwrap();
        b.lab.attach("B", "compute-1").unwrap();
        b.compare(
            "A and B on one subsystem",
            "compute-1",
            &[("A", &p[0]), ("B", &p[1])],
        );
        b.lab.delete("A").unwrap();
        let c = setup(&mut b, "compute-1", &["C"], true).remove(0);
        assert_eq!(
            c["data"]["ns_id"], p[0]["data"]["ns_id"],
            "C reuses A's nsid"
        );
        // By uuid, neither side reports the stale namespace for C.
        b.compare(
            "A deleted without detach, C on its nsid",
            "compute-1",
            &[("A", &p[0]), ("B", &p[1]), ("C", &c)],
        );
        b.finish(6);
    }

    #[test]
    fn nvme_device_path_and_missing_node_are_known_os_brick_quirks() {
        let Some(py) = python() else { return };
        let mut b = Bench::new(py);
        b.host(host("compute-1", true, true, true));
        b.lab.add_array(array(2, false, true)).unwrap();
        let a = setup(&mut b, "compute-1", &["A"], true).remove(0);
        b.lab.attach("A", "compute-1").unwrap();
        // Nova's device_path: the right one agrees; a stale one is returned as is by os-brick.
        let mut right = a.clone();
        right["data"]["device_path"] = json!("/dev/nvme0n1");
        let mut stale = a.clone();
        stale["data"]["device_path"] = json!("/dev/nvme3n1");
        b.compare(
            "A attached",
            "compute-1",
            &[
                ("A", &a),
                ("A-device-path", &right),
                ("A-stale-path", &stale),
            ],
        );
        assert_eq!(b.quirks.len(), 2, "{:?}", b.quirks);
        // A /dev without the node (a container's partial /dev): sysfs still has the namespace.
        let root = b.lab.root("compute-1").unwrap().to_path_buf();
        std::fs::remove_file(root.join("dev/nvme0n1")).unwrap();
        b.compare_unsettled("/dev/nvme0n1 missing", "compute-1", &[("A", &a)]);
        assert_eq!(b.quirks.len(), 4, "{:?}", b.quirks);
        b.finish(4);
    }
}
