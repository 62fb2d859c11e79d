//! Userland emulation: the commands a connector runs, with real output formats and exit
//! codes. Unknown programs exit 127 with `<prog>: command not found`.

pub(crate) mod iscsiadm;
pub(crate) mod multipath;
pub(crate) mod nvme;

use std::fmt::Write as _;

use crate::faults::Fault;
use crate::ids::{ExecOutput, HostId};
use crate::kernel::DevKind;
use crate::tree::Node;
use crate::world::World;

impl World {
    /// Whether running `argv` may change the simulated host (and so its tree). `false` only
    /// for queries: `iscsiadm -m session`, `-m node` listings and probes, `--op show`,
    /// `-m discoverydb -o show`, `multipathd show ...`, `multipath -l/-ll/-C`, `blockdev`
    /// queries and flushes, `scsi_id`, `dd`, `cat`, `lsscsi`. A port may skip re-materializing
    /// the host after those (faults they fire change no view).
    pub fn command_may_change_host(argv: &[String]) -> bool {
        let a: Vec<&str> = argv.iter().map(String::as_str).collect();
        let prog = a.first().map(|p| p.rsplit('/').next().unwrap_or(p));
        match (prog, a.get(1..).unwrap_or_default()) {
            (Some("iscsiadm"), ["-m", "session"] | ["-m", "node"]) => false,
            (Some("iscsiadm"), ["-m", "node", "-T", _, "-p", _]) => false,
            (Some("iscsiadm"), ["-m", "node", "--op", "show", "-p", _]) => false,
            (Some("iscsiadm"), ["-m", "discoverydb", "-o", "show", "-P", _]) => false,
            (Some("multipathd"), ["show", ..]) => false,
            (Some("multipath"), ["-l", ..] | ["-ll", ..] | ["-C", _]) => false,
            (Some("blockdev"), [op, _]) => {
                !matches!(*op, "--flushbufs" | "--getsize64" | "--getro")
            }
            (Some("scsi_id" | "dd" | "cat" | "lsscsi" | "true"), _) => false,
            _ => true,
        }
    }

    /// When the next pending udev or multipathd event falls due, if any.
    pub fn next_event_due(&self) -> Option<std::time::Duration> {
        self.events.keys().next().map(|(due, _)| *due)
    }
}

impl World {
    /// Runs a command on a host. `argv[0]` may be a bare name or a path (`/sbin/iscsiadm`).
    pub fn exec(&mut self, host: HostId, argv: &[String], stdin: Option<&str>) -> ExecOutput {
        let out = self.exec_now(host, argv, stdin);
        // Lookups (`blockdev`, `cat`...) read the cached tree before changing anything; a
        // query leaves the model, and so the cached tree, as it was.
        if Self::command_may_change_host(argv) {
            self.model_changed();
        }
        out
    }

    fn exec_now(&mut self, host: HostId, argv: &[String], stdin: Option<&str>) -> ExecOutput {
        let Some(prog) = argv.first() else {
            return ExecOutput::err(127, ": command not found\n");
        };
        let name = prog.rsplit('/').next().unwrap_or(prog);
        tracing::debug!(%host, ?argv, "exec");
        if self.faults.crashed(host) {
            return ExecOutput::err(137, format!("{prog}: killed (crash fault)\n"));
        }
        match name {
            "iscsiadm" => self.iscsiadm(host, argv),
            "multipath" | "multipathd" if !self.host_ref(host).mpd.installed => {
                ExecOutput::err(127, format!("{prog}: command not found\n"))
            }
            "multipath" => self.multipath_cmd(host, argv),
            "multipathd" => self.multipathd_cmd(host, argv),
            "tee" => self.tee(host, argv, stdin.unwrap_or("")),
            "blockdev" => self.blockdev(host, argv),
            "scsi_id" => self.scsi_id(host, argv),
            "dd" => self.dd(host, argv),
            "cat" => self.cat(host, argv),
            "lsscsi" => self.lsscsi(host),
            "nvme" if self.host_ref(host).spec.nvme.is_some() => self.nvme_cmd(host, argv),
            "true" => ExecOutput::ok(""),
            _ => ExecOutput::err(127, format!("{prog}: command not found\n")),
        }
    }

    fn tee(&mut self, host: HostId, argv: &[String], stdin: &str) -> ExecOutput {
        let files: Vec<&String> = argv
            .iter()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect();
        let mut out = ExecOutput::ok(stdin);
        for f in files {
            if let Err(e) = self.write_control(host, f, stdin) {
                let _ = writeln!(out.stderr, "tee: {f}: {}", e.kind.strerror());
                out.status = 1;
            }
        }
        out
    }

    /// Resolves a `/dev` path (following udev links) to a kernel block device name.
    fn block_name(&self, host: HostId, path: &str) -> Option<String> {
        let t = self.tree_shared(host);
        let real = t.resolve(path)?;
        match t.get(&real)? {
            Node::Block { .. } => real.strip_prefix("/dev/").map(str::to_owned),
            _ => None,
        }
    }

    /// Whether I/O to a block device would succeed now, and the volume it reaches.
    fn io_ok(&self, host: HostId, name: &str) -> bool {
        let k = &self.host_ref(host).kernel;
        let disk_ok = |d: &crate::kernel::ScsiDev| {
            self.scsi_route(host, d).is_some_and(|r| r.up) && self.backing_of(host, d).is_some()
        };
        if k.nvme.block_exists(name) {
            return self.nvme_io_ok(host, name);
        }
        if let Some(d) = k.disk_by_name(name) {
            return disk_ok(d);
        }
        k.dm_by_name(name).is_some_and(|m| {
            m.paths
                .iter()
                .filter_map(|p| k.disk_by_name(p))
                .any(disk_ok)
        })
    }

    fn blockdev(&mut self, host: HostId, argv: &[String]) -> ExecOutput {
        let (Some(op), Some(dev)) = (argv.get(1), argv.get(2)) else {
            return ExecOutput::err(
                1,
                "Usage:\n blockdev -V\n blockdev --report [devices]\n blockdev [-v|-q] commands devices\n",
            );
        };
        let Some(name) = self.block_name(host, dev) else {
            return ExecOutput::err(
                1,
                format!("blockdev: cannot open {dev}: No such file or directory\n"),
            );
        };
        match op.as_str() {
            "--flushbufs" => {
                let fired = self
                    .faults
                    .fire(|f| matches!(f, Fault::BlockdevFlushFails { host: h, .. } if *h == host));
                if fired {
                    ExecOutput::err(
                        1,
                        "blockdev: ioctl error on BLKFLSBUF: Input/output error\n",
                    )
                    .with_dev(dev)
                } else {
                    ExecOutput::ok("")
                }
            }
            "--getsize64" => {
                let k = &self.host_ref(host).kernel;
                let size = k
                    .disk_by_name(&name)
                    .map(|d| d.size_bytes)
                    .or_else(|| k.dm_by_name(&name).map(|m| m.size_bytes))
                    .or_else(|| k.nvme.block_size(&name))
                    .unwrap_or(0);
                ExecOutput::ok(format!("{size}\n"))
            }
            "--getro" => ExecOutput::ok("0\n"),
            "--rereadpt" => ExecOutput::ok(""),
            _ => ExecOutput::err(1, format!("blockdev: Unknown command: {op}\n")),
        }
    }

    /// `/lib/udev/scsi_id --page 0x83 --whitelisted DEV`: a real INQUIRY, so it answers with
    /// what the array maps at that LUN *now* (not the cached sysfs identity).
    fn scsi_id(&mut self, host: HostId, argv: &[String]) -> ExecOutput {
        let Some(dev) = argv
            .iter()
            .skip(1)
            .rev()
            .find(|a| !a.starts_with('-') && a.starts_with('/'))
        else {
            return ExecOutput::err(1, "");
        };
        let Some(name) = self.block_name(host, dev) else {
            return ExecOutput::err(1, "");
        };
        let k = &self.host_ref(host).kernel;
        let Some(d) = k.disk_by_name(&name) else {
            return ExecOutput::err(1, "");
        };
        let Some(r) = self.scsi_route(host, d) else {
            return ExecOutput::err(1, "");
        };
        if !r.up {
            return ExecOutput::err(1, "");
        }
        match self.probe(r.array, &r.target, &r.initiator, d.hctl.lun) {
            Some(crate::array::Probe::Disk { identity, .. }) => {
                ExecOutput::ok(format!("{}\n", identity.udev_wwid()))
            }
            _ => ExecOutput::err(1, ""),
        }
    }

    fn dd(&mut self, host: HostId, argv: &[String]) -> ExecOutput {
        let Some(input) = argv.iter().find_map(|a| a.strip_prefix("if=")) else {
            return ExecOutput::ok("0+0 records in\n0+0 records out\n");
        };
        let Some(name) = self.block_name(host, input) else {
            return ExecOutput::err(
                1,
                format!("dd: failed to open '{input}': No such file or directory\n"),
            );
        };
        if self.io_ok(host, &name) {
            ExecOutput {
                status: 0,
                stdout: String::new(),
                stderr: "1+0 records in\n1+0 records out\n512 bytes copied, 0.000123 s, 4.2 MB/s\n"
                    .to_owned(),
            }
        } else {
            ExecOutput::err(
                1,
                format!(
                    "dd: error reading '{input}': Input/output error\n0+0 records in\n0+0 records out\n0 bytes copied, 0.000123 s, 0.0 kB/s\n"
                ),
            )
        }
    }

    fn cat(&mut self, host: HostId, argv: &[String]) -> ExecOutput {
        let t = self.tree_shared(host);
        let mut out = ExecOutput::ok("");
        for f in argv.iter().skip(1) {
            let node = t.resolve(f).and_then(|p| t.get(&p).cloned());
            match node {
                Some(Node::File { mode, content }) if mode & 0o444 != 0 => {
                    out.stdout.push_str(&String::from_utf8_lossy(&content));
                }
                Some(Node::File { .. }) => {
                    let _ = writeln!(out.stderr, "cat: {f}: Permission denied");
                    out.status = 1;
                }
                Some(Node::Unreadable { errno, .. }) => {
                    let _ = writeln!(out.stderr, "cat: {f}: {}", errno.strerror());
                    out.status = 1;
                }
                Some(Node::Dir { .. }) => {
                    let _ = writeln!(out.stderr, "cat: {f}: Is a directory");
                    out.status = 1;
                }
                Some(_) => {}
                None => {
                    let _ = writeln!(out.stderr, "cat: {f}: No such file or directory");
                    out.status = 1;
                }
            }
        }
        out
    }

    fn lsscsi(&self, host: HostId) -> ExecOutput {
        let k = &self.host_ref(host).kernel;
        let mut out = String::new();
        for d in k.devices.values() {
            let (typ, node) = match d.kind {
                DevKind::Disk { .. } => {
                    ("disk", format!("/dev/{}", d.sd_name().unwrap_or_default()))
                }
                DevKind::Controller => ("storage", "-".to_owned()),
            };
            let hctl = format!("[{}]", d.hctl);
            let _ = writeln!(
                out,
                "{hctl:<13}{typ:<8}{:<9}{:<17}0001  {node}",
                crate::naming::pad(&d.vendor, 8),
                crate::naming::pad(&d.model, 16)
            );
        }
        ExecOutput::ok(out)
    }
}

impl ExecOutput {
    fn with_dev(mut self, dev: &str) -> Self {
        self.stderr = self
            .stderr
            .replace("BLKFLSBUF:", &format!("BLKFLSBUF ({dev}):"));
        self
    }
}
