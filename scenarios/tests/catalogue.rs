//! Every `*.toml` under `scenarios/catalogue/` is a test, found at run time: dropping a file
//! in adds a test without touching Rust or rebuilding.
//!
//! Each step's host summary is an insta snapshot, `scenarios/snapshots/<scenario>__stepNN.snap`:
//! `cargo insta review` shows what a change did to the hosts. In CI (`CI=true`, or
//! `INSTA_UPDATE=no`) a missing or changed snapshot fails the test.
//!
//! Environment:
//! - `BRICK_CATALOGUE=DIR`: run the scenarios of DIR instead of the catalogue;
//! - `BRICK_SNAPSHOTS=DIR`: keep snapshots in DIR instead of `scenarios/snapshots`;
//! - `BRICK_TARGET=target.toml`: run on an exec-tier target (no snapshots; scenarios the
//!   target cannot run are reported as ignored, with the reason).
//!
//! Two meta tests re-run this binary as a child on a temporary catalogue: a dropped-in file is
//! picked up, and an unreviewed snapshot change fails under CI settings.

use std::path::{Path, PathBuf};
use std::process::Command;

use brick_scenarios::target::{TargetFile, target_from_env};
use libtest_mimic::{Arguments, Completion, Failed, Trial};

const CATALOGUE_ENV: &str = "BRICK_CATALOGUE";
const SNAPSHOTS_ENV: &str = "BRICK_SNAPSHOTS";
/// Set in child runs so they do not start meta tests of their own.
const CHILD_ENV: &str = "BRICK_CATALOGUE_CHILD";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dir_from_env(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map_or_else(|| manifest_dir().join(default), PathBuf::from)
}

/// Every `*.toml` under `dir`, recursively, sorted, as paths relative to `dir`.
fn scenario_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if p.extension().is_some_and(|x| x == "toml") {
                out.push(p.strip_prefix(root).unwrap_or(&p).to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Escapes regex metacharacters (insta filters are regexes).
fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn run_file(
    path: &Path,
    snapshots: &Path,
    target: Option<&TargetFile>,
) -> Result<Completion, Failed> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let scn =
        brick_scenarios::parse(&path.display().to_string(), &text).map_err(|e| e.to_string())?;
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let replay = format!(
        "cargo test -p brick-scenarios --test catalogue -- --exact scenario::{file}   (or: brick scenario run {}{})",
        path.display(),
        target
            .map(|t| format!(" --target {}", t.path.display()))
            .unwrap_or_default()
    );
    if let Some(tf) = target {
        let outcome = brick_scenarios::target::run_scenario(&scn, Some(tf))
            .map_err(|e| format!("{e}\nreplay: {replay}"))?;
        if let Some(reason) = outcome.skipped {
            return Ok(Completion::Ignored {
                reason: Some(reason),
            });
        }
        if !outcome.passed() {
            return Err(outcome.failure_report(&replay).into());
        }
        return Ok(Completion::Completed);
    }
    let (outcome, lab) = brick_scenarios::run(&scn, None).map_err(|e| e.to_string())?;
    if !outcome.passed() {
        return Err(outcome.failure_report(&replay).into());
    }
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(snapshots);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    for host in lab.host_names() {
        if let Ok(root) = lab.root(&host) {
            settings.add_filter(&regex_escape(&root.display().to_string()), "[ROOT]");
        }
    }
    for step in &outcome.steps {
        let Some(snap) = &step.snapshot else { continue };
        settings.set_description(format!("{file}: {}", snap.step));
        settings.bind(|| {
            insta::assert_yaml_snapshot!(format!("{}__step{:02}", scn.name, step.index), snap);
        });
    }
    Ok(Completion::Completed)
}

fn main() {
    let mut args = Arguments::from_args();
    let catalogue = dir_from_env(CATALOGUE_ENV, "catalogue");
    let snapshots = dir_from_env(SNAPSHOTS_ENV, "snapshots");
    let target = match target_from_env() {
        Ok(t) => t,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::exit(2);
        }
    };
    if target.is_some() {
        // One array, one host: scenarios take turns (a real host is not ours to race on).
        args.test_threads = Some(1);
    }
    let mut trials = Vec::new();
    for rel in scenario_files(&catalogue) {
        let path = catalogue.join(&rel);
        let snaps = snapshots.clone();
        let target = target.clone();
        trials.push(
            Trial::ignorable_test(format!("scenario::{}", rel.display()), move || {
                run_file(&path, &snaps, target.as_ref())
            })
            .with_kind("scenario"),
        );
    }
    if std::env::var_os(CHILD_ENV).is_none() {
        trials.push(Trial::test(
            "meta::dropped_in_file_is_picked_up_without_a_rebuild",
            dropped_in_file_is_picked_up,
        ));
        trials.push(Trial::test(
            "meta::unreviewed_snapshot_change_fails_in_ci",
            unreviewed_snapshot_change_fails,
        ));
    }
    libtest_mimic::run(&args, trials).exit();
}

/// Runs this test binary as a child on another catalogue and snapshot directory.
fn child(catalogue: &Path, snapshots: &Path, ci: bool, args: &[&str]) -> (bool, String) {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env(CHILD_ENV, "1")
        .env(CATALOGUE_ENV, catalogue)
        .env(SNAPSHOTS_ENV, snapshots)
        .env_remove("BRICK_TARGET")
        .env_remove("INSTA_FORCE_PASS")
        .env_remove("INSTA_GLOB_FILTER");
    if ci {
        cmd.env("CI", "true").env("INSTA_UPDATE", "no");
    } else {
        cmd.env_remove("CI").env("INSTA_UPDATE", "always");
    }
    let out = cmd.output().expect("the child test run starts");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

const PROBE: &str = "iscsi-single-attach-detach";

fn dropped_in_file_is_picked_up() -> Result<(), Failed> {
    let tmp = tempfile::tempdir()?;
    let (cat, snaps) = (tmp.path().join("catalogue"), tmp.path().join("snapshots"));
    std::fs::create_dir_all(&cat)?;
    let text = std::fs::read_to_string(manifest_dir().join(format!("catalogue/{PROBE}.toml")))?
        .replace(&format!("name = \"{PROBE}\""), "name = \"dropped-in\"");
    std::fs::write(cat.join("dropped-in.toml"), text)?;
    let (ok, out) = child(&cat, &snaps, false, &["--list"]);
    if !ok || !out.contains("scenario::dropped-in.toml") {
        return Err(format!("the dropped-in file was not listed:\n{out}").into());
    }
    let (ok, out) = child(
        &cat,
        &snaps,
        false,
        &["--exact", "scenario::dropped-in.toml"],
    );
    if !ok || !out.contains("1 passed") {
        return Err(format!("the dropped-in scenario did not pass:\n{out}").into());
    }
    if !snaps.join("dropped-in__step01.snap").exists() {
        return Err(format!("no snapshot was written for it in {}", snaps.display()).into());
    }
    Ok(())
}

fn unreviewed_snapshot_change_fails() -> Result<(), Failed> {
    let tmp = tempfile::tempdir()?;
    let (cat, snaps) = (tmp.path().join("catalogue"), tmp.path().join("snapshots"));
    std::fs::create_dir_all(&cat)?;
    std::fs::create_dir_all(&snaps)?;
    std::fs::copy(
        manifest_dir().join(format!("catalogue/{PROBE}.toml")),
        cat.join(format!("{PROBE}.toml")),
    )?;
    let committed = manifest_dir().join("snapshots");
    let mut copied = 0;
    for e in std::fs::read_dir(&committed)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{PROBE}__")) && name.ends_with(".snap") {
            std::fs::copy(e.path(), snaps.join(&name))?;
            copied += 1;
        }
    }
    if copied == 0 {
        return Err(format!(
            "no committed snapshots of {PROBE} in {}",
            committed.display()
        )
        .into());
    }
    let filter = ["--exact", &format!("scenario::{PROBE}.toml")];
    // The reviewed snapshots pass under CI settings...
    let (ok, out) = child(&cat, &snaps, true, &filter);
    if !ok {
        return Err(format!("the committed snapshots do not pass in CI mode:\n{out}").into());
    }
    // ...an unreviewed change (here: a host that was clean now shows a session) fails...
    let step = snaps.join(format!("{PROBE}__step05.snap"));
    let text = std::fs::read_to_string(&step)?;
    let altered = text.replacen(
        "sessions: []",
        "sessions:\n      - session9 10.9.9.9:3260 iqn.unreviewed LOGGED_IN",
        1,
    );
    if altered == text {
        return Err(format!("could not alter {}: {text}", step.display()).into());
    }
    std::fs::write(&step, altered)?;
    let (ok, out) = child(&cat, &snaps, true, &filter);
    if ok {
        return Err(format!("an altered snapshot passed in CI mode:\n{out}").into());
    }
    if !out.contains(&format!("{PROBE}__step05")) {
        return Err(format!("the failure does not name the snapshot:\n{out}").into());
    }
    // ...and so does a missing one.
    std::fs::remove_file(&step)?;
    let (ok, out) = child(&cat, &snaps, true, &filter);
    if ok {
        return Err(format!("a missing snapshot passed in CI mode:\n{out}").into());
    }
    if snaps.join(format!("{PROBE}__step05.snap")).exists() {
        return Err("CI mode wrote a snapshot".into());
    }
    Ok(())
}
