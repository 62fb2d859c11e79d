//! `nvme` (nvme-cli 2.x with libnvme): output formats from the captures' section 4 and exit
//! codes from nvme-cli's sources (`main` returns 1 for any error, so "already connected" is
//! exit 1 with `already connected` on stderr).

use std::fmt::Write as _;

use crate::ids::{ExecOutput, HostId};
use crate::nvme::{ConnectArgs, ConnectError, CtrlState, NvmeBlock, NvmePort, NvmeTransport};
use crate::world::World;

/// A json-c `JSON_C_TO_STRING_PRETTY` value (keys keep their order).
enum J {
    Obj(Vec<(&'static str, J)>),
    Arr(Vec<J>),
    Str(String),
    Num(u64),
}

impl J {
    fn write(&self, out: &mut String, level: usize) {
        let pad = |n: usize| "  ".repeat(n);
        match self {
            J::Str(s) => {
                let _ = write!(out, "\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
            }
            J::Num(n) => {
                let _ = write!(out, "{n}");
            }
            J::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    out.push_str(if i == 0 { "\n" } else { ",\n" });
                    let _ = write!(out, "{}\"{k}\":", pad(level + 1));
                    v.write(out, level + 1);
                }
                let _ = write!(out, "\n{}}}", pad(level));
            }
            J::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    out.push_str(if i == 0 { "\n" } else { ",\n" });
                    out.push_str(&pad(level + 1));
                    v.write(out, level + 1);
                }
                let _ = write!(out, "\n{}]", pad(level));
            }
        }
    }

    fn render(&self) -> String {
        let mut s = String::new();
        self.write(&mut s, 0);
        s.push('\n');
        s
    }
}

/// nvme-cli's `suffix_si_get` + `"%6.2f %2sB"`.
fn si(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let mut v = bytes as f64;
    let units = ["", "k", "M", "G", "T", "P"];
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    format!("{v:6.2} {:>2}B", units.get(u).copied().unwrap_or(""))
}

/// Options of one `nvme` invocation: `-x V`, `-xV`, `--long V`, `--long=V`, flags.
struct Opts {
    values: Vec<(String, String)>,
    positional: Vec<String>,
}

impl Opts {
    fn parse(args: &[String], with_value: &[(&str, &str)]) -> Self {
        let mut values = Vec::new();
        let mut positional = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let canon = |key: &str| -> Option<String> {
                with_value
                    .iter()
                    .find(|(s, l)| *s == key || *l == key)
                    .map(|(s, _)| (*s).to_owned())
            };
            if let Some(long) = a.strip_prefix("--") {
                let (k, v) = match long.split_once('=') {
                    Some((k, v)) => (k, Some(v.to_owned())),
                    None => (long, None),
                };
                match canon(k) {
                    Some(c) => {
                        let v = v.or_else(|| it.next().cloned()).unwrap_or_default();
                        values.push((c, v));
                    }
                    None => values.push((k.to_owned(), String::new())),
                }
            } else if let Some(short) = a.strip_prefix('-').filter(|s| !s.is_empty()) {
                let (k, rest) = short.split_at(short.chars().next().map_or(0, char::len_utf8));
                match canon(k) {
                    Some(c) => {
                        let v = if rest.is_empty() {
                            it.next().cloned().unwrap_or_default()
                        } else {
                            rest.trim_start_matches('=').to_owned()
                        };
                        values.push((c, v));
                    }
                    None => values.push((k.to_owned(), String::new())),
                }
            } else {
                positional.push(a.clone());
            }
        }
        Self { values, positional }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> bool {
        self.get("o").is_some_and(|v| v == "json")
    }
}

impl World {
    pub(crate) fn nvme_cmd(&mut self, host: HostId, argv: &[String]) -> ExecOutput {
        let Some(sub) = argv.get(1) else {
            return ExecOutput::err(1, "usage: nvme <command> [<device>] [<args>]\n");
        };
        let rest = argv.get(2..).unwrap_or_default();
        match sub.as_str() {
            "version" => {
                ExecOutput::ok("nvme version 2.3 (git 2.3)\nlibnvme version 1.3 (git 1.3)\n")
            }
            "show-hostnqn" => {
                let nqn = self.nvme_host_spec(host).map(|n| n.hostnqn.clone());
                ExecOutput::ok(format!("{}\n", nqn.unwrap_or_default()))
            }
            "gen-hostnqn" => {
                let u = self.nvme_host_spec(host).map(|n| n.product_uuid.clone());
                ExecOutput::ok(format!(
                    "nqn.2014-08.org.nvmexpress:uuid:{}\n",
                    u.unwrap_or_default()
                ))
            }
            "connect" => self.nvme_cli_connect(host, rest),
            "disconnect" => self.nvme_cli_disconnect(host, rest),
            "ns-rescan" => self.nvme_cli_rescan(host, rest),
            "list" => self.nvme_cli_list(host, &Opts::parse(rest, &[("o", "output-format")])),
            "list-subsys" => {
                self.nvme_cli_list_subsys(host, &Opts::parse(rest, &[("o", "output-format")]))
            }
            "id-ns" => self.nvme_cli_id_ns(
                host,
                &Opts::parse(rest, &[("o", "output-format"), ("n", "namespace-id")]),
            ),
            other => ExecOutput::err(
                1,
                format!("ERROR: Invalid sub-command '{other}' for plugin 'nvme'\n"),
            ),
        }
    }

    fn nvme_host_spec(&self, host: HostId) -> Option<&crate::nvme::NvmeHostSpec> {
        self.host_ref(host).spec.nvme.as_ref()
    }

    fn nvme_cli_connect(&mut self, host: HostId, args: &[String]) -> ExecOutput {
        let o = Opts::parse(
            args,
            &[
                ("t", "transport"),
                ("a", "traddr"),
                ("s", "trsvcid"),
                ("n", "nqn"),
                ("q", "hostnqn"),
                ("I", "hostid"),
                ("Q", "queue-size"),
                ("l", "ctrl-loss-tmo"),
                ("c", "reconnect-delay"),
                ("k", "keep-alive-tmo"),
                ("i", "nr-io-queues"),
                ("w", "host-traddr"),
                ("f", "host-iface"),
                ("o", "output-format"),
            ],
        );
        let Some(nqn) = o.get("n").filter(|n| !n.is_empty()) else {
            return ExecOutput::err(1, "need a -n argument\n");
        };
        let Some(transport) = o.get("t").and_then(NvmeTransport::parse) else {
            return ExecOutput::err(1, "need a transport (-t) argument\n");
        };
        let Some(traddr) = o.get("a").filter(|a| !a.is_empty()) else {
            return ExecOutput::err(1, "need a address (-a) argument\n");
        };
        let trsvcid = match o.get("s") {
            None => 4420,
            Some(s) => match s.parse::<u16>() {
                Ok(p) => p,
                Err(_) => {
                    return ExecOutput::err(
                        1,
                        "Failed to write to /dev/nvme-fabrics: Invalid argument\ncould not add new controller: invalid arguments/configuration\n",
                    );
                }
            },
        };
        let Some(spec) = self.nvme_host_spec(host).cloned() else {
            return ExecOutput::err(127, "nvme: command not found\n");
        };
        let ctrl_loss_tmo = match o.get("l").map(str::parse::<i64>) {
            None => Some(600),
            Some(Ok(v)) if v < 0 => None,
            Some(Ok(v)) => u32::try_from(v).ok(),
            Some(Err(_)) => return ExecOutput::err(1, "Invalid argument for --ctrl-loss-tmo\n"),
        };
        let reconnect_delay = o.get("c").and_then(|c| c.parse().ok()).unwrap_or(10);
        let req = ConnectArgs {
            port: NvmePort {
                traddr: traddr.to_owned(),
                trsvcid,
                transport,
            },
            nqn: nqn.to_owned(),
            hostnqn: o.get("q").map_or(spec.hostnqn, str::to_owned),
            hostid: o.get("I").map_or(spec.hostid, str::to_owned),
            ctrl_loss_tmo,
            reconnect_delay,
        };
        match self.nvme_connect(host, req) {
            Ok(instance) => {
                if o.json() {
                    ExecOutput::ok(format!("{{\n  \"device\":\"nvme{instance}\"\n}}\n"))
                } else {
                    ExecOutput::ok(format!("device: nvme{instance}\n"))
                }
            }
            Err(ConnectError::AlreadyConnected) => ExecOutput::err(1, "already connected\n"),
            Err(ConnectError::Refused) => ExecOutput::err(
                1,
                "Failed to write to /dev/nvme-fabrics: Connection refused\ncould not add new controller: connection refused\n",
            ),
            Err(ConnectError::TimedOut) => ExecOutput::err(
                1,
                "Failed to write to /dev/nvme-fabrics: Connection timed out\ncould not add new controller: failed to write to nvme-fabrics device\n",
            ),
            Err(ConnectError::Rejected) => ExecOutput::err(
                1,
                "Failed to write to /dev/nvme-fabrics: Input/output error\ncould not add new controller: failed to write to nvme-fabrics device\n",
            ),
        }
    }

    fn nvme_cli_disconnect(&mut self, host: HostId, args: &[String]) -> ExecOutput {
        let o = Opts::parse(args, &[("n", "nqn"), ("d", "device")]);
        match (o.get("n"), o.get("d")) {
            (Some(_), Some(_)) => ExecOutput::err(
                1,
                "Both device name [--device | -d] and NQN [--nqn | -n] are specified\n",
            ),
            (None, None) => ExecOutput::err(
                1,
                "Neither device name [--device | -d] nor NQN [--nqn | -n] provided\n",
            ),
            (Some(nqns), None) => {
                let mut n = 0;
                for nqn in nqns.split(',').filter(|s| !s.is_empty()) {
                    let ctrls: Vec<u32> = self
                        .host_ref(host)
                        .kernel
                        .nvme
                        .ctrls
                        .values()
                        .filter(|c| c.nqn == nqn)
                        .map(|c| c.instance)
                        .collect();
                    for c in ctrls {
                        if self.nvme_delete_ctrl(host, c) {
                            n += 1;
                        }
                    }
                }
                ExecOutput::ok(format!("NQN:{nqns} disconnected {n} controller(s)\n"))
            }
            (None, Some(devs)) => {
                for d in devs.split(',').filter(|s| !s.is_empty()) {
                    let name = d.strip_prefix("/dev/").unwrap_or(d);
                    let inst = name
                        .strip_prefix("nvme")
                        .and_then(|n| n.parse::<u32>().ok())
                        .filter(|i| self.host_ref(host).kernel.nvme.ctrls.contains_key(i));
                    let Some(inst) = inst else {
                        return ExecOutput::err(1, format!("Did not find device {name}\n"));
                    };
                    self.nvme_delete_ctrl(host, inst);
                }
                ExecOutput::ok("")
            }
        }
    }

    fn nvme_cli_rescan(&mut self, host: HostId, args: &[String]) -> ExecOutput {
        let Some(dev) = args.iter().find(|a| !a.starts_with('-')) else {
            return ExecOutput::err(1, "ns-rescan: missing device\n");
        };
        let name = dev.strip_prefix("/dev/").unwrap_or(dev);
        let k = &self.host_ref(host).kernel.nvme;
        let inst = name
            .strip_prefix("nvme")
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|i| k.ctrls.contains_key(i));
        let Some(inst) = inst else {
            return ExecOutput::err(1, format!("{dev}: No such file or directory\n"));
        };
        self.nvme_scan(host, inst);
        ExecOutput::ok("")
    }

    /// Visible namespaces in `nvme list` order: (device, generic, subsys instance, nsid,
    /// size, ctrl name).
    fn nvme_visible(&self, host: HostId) -> Vec<(String, String, u32, u32, u64, Vec<String>)> {
        let k = &self.host_ref(host).kernel.nvme;
        let mut out = Vec::new();
        for (name, b) in k.blocks(k.multipath) {
            match b {
                NvmeBlock::Head { subsys, head } => {
                    let Some(h) = k.subsystems.get(&subsys).and_then(|s| s.heads.get(&head)) else {
                        continue;
                    };
                    let ctrls = k
                        .ctrls
                        .values()
                        .rev()
                        .filter(|c| c.subsys == subsys && c.ns.values().any(|n| n.head == head))
                        .map(|c| format!("nvme{}", c.instance))
                        .collect();
                    out.push((
                        name,
                        format!("ng{subsys}n{head}"),
                        subsys,
                        h.nsid,
                        h.size_bytes,
                        ctrls,
                    ));
                }
                NvmeBlock::Path { ctrl, nsid } if !k.multipath => {
                    let Some((c, ns)) =
                        k.ctrls.get(&ctrl).and_then(|c| Some((c, c.ns.get(&nsid)?)))
                    else {
                        continue;
                    };
                    out.push((
                        name,
                        format!("ng{ctrl}n{}", ns.head),
                        c.subsys,
                        nsid,
                        ns.size_bytes,
                        vec![format!("nvme{ctrl}")],
                    ));
                }
                NvmeBlock::Path { .. } => {}
            }
        }
        out
    }

    fn nvme_cli_list(&self, host: HostId, o: &Opts) -> ExecOutput {
        let k = &self.host_ref(host).kernel.nvme;
        let rows = self.nvme_visible(host);
        if o.json() {
            let devices = rows
                .iter()
                .filter_map(|(dev, _, subsys, nsid, size, _)| {
                    let s = k.subsystems.get(subsys)?;
                    Some(J::Obj(vec![
                        ("NameSpace", J::Num(u64::from(*nsid))),
                        ("DevicePath", J::Str(format!("/dev/{dev}"))),
                        ("Firmware", J::Str(s.firmware_rev.clone())),
                        ("ModelNumber", J::Str(s.model.trim().to_owned())),
                        ("SerialNumber", J::Str(s.serial.trim().to_owned())),
                        ("UsedBytes", J::Num(*size)),
                        ("MaximumLBA", J::Num(size / 512)),
                        ("PhysicalSize", J::Num(*size)),
                        ("SectorSize", J::Num(512)),
                    ]))
                })
                .collect();
            return ExecOutput::ok(J::Obj(vec![("Devices", J::Arr(devices))]).render());
        }
        let mut out = format!(
            "{:<21} {:<21} {:<20} {:<40} {:<9} {:<26} {:<16} {:<8}\n",
            "Node", "Generic", "SN", "Model", "Namespace", "Usage", "Format", "FW Rev"
        );
        let _ = writeln!(
            out,
            "{} {} {} {} {} {} {} {}",
            "-".repeat(21),
            "-".repeat(21),
            "-".repeat(20),
            "-".repeat(40),
            "-".repeat(9),
            "-".repeat(26),
            "-".repeat(16),
            "-".repeat(8)
        );
        for (dev, ng, subsys, nsid, size, _) in &rows {
            let Some(s) = k.subsystems.get(subsys) else {
                continue;
            };
            let usage = format!("{} / {}", si(*size), si(*size));
            let fw: String = s.firmware_rev.chars().take(8).collect();
            let _ = writeln!(
                out,
                "{:<21} {:<21} {:<20} {:<40} {:<9} {:<26} {:<16} {fw}",
                format!("/dev/{dev}"),
                format!("/dev/{ng}"),
                s.serial.trim(),
                s.model.trim(),
                nsid,
                usage,
                "512   B +  0 B",
            );
        }
        ExecOutput::ok(out)
    }

    fn nvme_cli_list_subsys(&self, host: HostId, o: &Opts) -> ExecOutput {
        let k = &self.host_ref(host).kernel.nvme;
        let subsys_ctrls = |s: u32| k.ctrls.values().filter(move |c| c.subsys == s);
        if o.json() {
            // One entry per host NQN/ID pair that has controllers.
            let mut hosts: Vec<(String, String)> = Vec::new();
            for c in k.ctrls.values() {
                let key = (c.hostnqn.clone(), c.hostid.clone());
                if !hosts.contains(&key) {
                    hosts.push(key);
                }
            }
            let entries = hosts
                .into_iter()
                .map(|(nqn, id)| {
                    let subsystems = k
                        .subsystems
                        .values()
                        .filter(|s| subsys_ctrls(s.instance).any(|c| c.hostnqn == nqn))
                        .map(|s| {
                            let paths = subsys_ctrls(s.instance)
                                .filter(|c| c.hostnqn == nqn)
                                .map(|c| {
                                    J::Obj(vec![
                                        ("Name", J::Str(format!("nvme{}", c.instance))),
                                        ("Transport", J::Str(c.port.transport.as_str().to_owned())),
                                        ("Address", J::Str(crate::nvme::sysfs::address(c))),
                                        (
                                            "State",
                                            J::Str(self.ctrl_state(host, c).as_str().to_owned()),
                                        ),
                                    ])
                                })
                                .collect();
                            J::Obj(vec![
                                ("Name", J::Str(format!("nvme-subsys{}", s.instance))),
                                ("NQN", J::Str(s.nqn.clone())),
                                ("Paths", J::Arr(paths)),
                            ])
                        })
                        .collect();
                    J::Obj(vec![
                        ("HostNQN", J::Str(nqn)),
                        ("HostID", J::Str(id)),
                        ("Subsystems", J::Arr(subsystems)),
                    ])
                })
                .collect::<Vec<J>>();
            if entries.is_empty() {
                return ExecOutput::ok("[\n]\n");
            }
            return ExecOutput::ok(J::Arr(entries).render());
        }
        let mut out = String::new();
        for (i, s) in k.subsystems.values().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let _ = writeln!(out, "nvme-subsys{} - NQN={}", s.instance, s.nqn);
            out.push_str("\\\n");
            for c in subsys_ctrls(s.instance) {
                let _ = writeln!(
                    out,
                    " +- nvme{} {} {} {} ",
                    c.instance,
                    c.port.transport.as_str(),
                    crate::nvme::sysfs::address(c),
                    self.ctrl_state(host, c).as_str()
                );
            }
        }
        ExecOutput::ok(out)
    }

    fn nvme_cli_id_ns(&self, host: HostId, o: &Opts) -> ExecOutput {
        let Some(dev) = o.positional.first() else {
            return ExecOutput::err(1, "id-ns: missing device\n");
        };
        let name = dev.strip_prefix("/dev/").unwrap_or(dev);
        let k = &self.host_ref(host).kernel.nvme;
        let found = match k.find(name) {
            Some(NvmeBlock::Head { subsys, head }) => k
                .subsystems
                .get(&subsys)
                .and_then(|s| s.heads.get(&head))
                .map(|h| (h.size_bytes, h.ids.clone())),
            Some(NvmeBlock::Path { ctrl, nsid }) if !k.multipath => k
                .ctrls
                .get(&ctrl)
                .and_then(|c| c.ns.get(&nsid))
                .map(|n| (n.size_bytes, n.ids.clone())),
            _ => None,
        };
        let Some((size, ids)) = found else {
            return ExecOutput::err(1, format!("{dev}: No such file or directory\n"));
        };
        if !self.nvme_io_ok(host, name) {
            return ExecOutput::err(
                1,
                "NVMe status: Invalid Namespace or Format: The namespace or the format of that namespace is invalid(0x400b)\n",
            );
        }
        let nsze = size / 512;
        let nguid = ids.nguid.unwrap_or_default().replace('-', "");
        let nguid = if nguid.is_empty() {
            "00000000000000000000000000000000".to_owned()
        } else {
            nguid
        };
        if !o.json() {
            return ExecOutput::ok(format!(
                "NVME Identify Namespace {}:\nnsze    : {nsze:#x}\nncap    : {nsze:#x}\nnuse    : {nsze:#x}\nnlbaf   : 0\nflbas   : 0\nnguid   : {nguid}\neui64   : 0000000000000000\nlbaf  0 : ms:0   lbads:9  rp:0 (in use)\n",
                o.get("n").unwrap_or("1")
            ));
        }
        let z = |k: &'static str| (k, J::Num(0));
        let j = J::Obj(vec![
            ("nsze", J::Num(nsze)),
            ("ncap", J::Num(nsze)),
            ("nuse", J::Num(nsze)),
            z("nsfeat"),
            z("nlbaf"),
            z("flbas"),
            z("mc"),
            z("dpc"),
            z("dps"),
            ("nmic", J::Num(1)),
            z("rescap"),
            z("fpi"),
            z("dlfeat"),
            z("nawun"),
            z("nawupf"),
            z("nacwu"),
            z("nabsn"),
            z("nabo"),
            z("nabspf"),
            z("noiob"),
            z("nvmcap"),
            z("mssrl"),
            z("mcl"),
            z("msrc"),
            z("nulbaf"),
            ("anagrpid", J::Num(1)),
            z("nsattr"),
            z("nvmsetid"),
            z("endgid"),
            ("nguid", J::Str(nguid)),
            ("eui64", J::Str("0000000000000000".to_owned())),
            (
                "lbafs",
                J::Arr(vec![J::Obj(vec![
                    ("ms", J::Num(0)),
                    ("ds", J::Num(9)),
                    ("rp", J::Num(0)),
                ])]),
            ),
        ]);
        ExecOutput::ok(j.render())
    }

    /// `echo 1 > /sys/devices/virtual/nvme-fabrics/ctl/nvmeN/<attr>`.
    pub(crate) fn nvme_control(
        &mut self,
        host: HostId,
        path: &str,
        ctrl: &str,
        attr: &str,
        content: &str,
    ) -> Result<(), crate::ids::ControlError> {
        use crate::ids::{ControlError, Errno};
        let Some(inst) = ctrl
            .strip_prefix("nvme")
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|i| self.host_ref(host).kernel.nvme.ctrls.contains_key(i))
        else {
            return Err(ControlError::new(Errno::ENOENT, path, "no such controller"));
        };
        match attr {
            "delete_controller" => {
                self.nvme_delete_ctrl(host, inst);
                Ok(())
            }
            "rescan_controller" => {
                self.nvme_scan(host, inst);
                Ok(())
            }
            "reset_controller" => {
                let live = self
                    .host_ref(host)
                    .kernel
                    .nvme
                    .ctrls
                    .get(&inst)
                    .is_some_and(|c| self.ctrl_state(host, c) == CtrlState::Live);
                if live {
                    self.nvme_scan(host, inst);
                    Ok(())
                } else {
                    Err(ControlError::new(Errno::EBUSY, path, "controller not live"))
                }
            }
            "reconnect_delay" | "ctrl_loss_tmo" => {
                let v = content.trim();
                let k = &mut self.host_mut(host).kernel.nvme;
                let Some(c) = k.ctrls.get_mut(&inst) else {
                    return Ok(());
                };
                if attr == "reconnect_delay" {
                    c.reconnect_delay = v
                        .parse()
                        .map_err(|_| ControlError::new(Errno::EINVAL, path, "not a number"))?;
                } else {
                    c.ctrl_loss_tmo = match v.parse::<i64>() {
                        Ok(n) if n < 0 => None,
                        Ok(n) => u32::try_from(n).ok(),
                        Err(_) if v == "off" => None,
                        Err(_) => {
                            return Err(ControlError::new(Errno::EINVAL, path, "not a number"));
                        }
                    };
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
