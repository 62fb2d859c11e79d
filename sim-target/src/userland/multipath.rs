//! `multipath` and `multipathd` (multipath-tools 0.9.4) output formats and exit codes.

use std::fmt::Write as _;

use crate::ids::{ExecOutput, HostId};
use crate::kernel::{DmMap, ScsiDev};
use crate::multipath::FlushError;
use crate::naming::sd_devt;
use crate::world::World;

/// multipath's `snprint_size`: KiB scaled to k/M/G/T/P, one decimal below 10.
pub(crate) fn size_str(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let mut s = (bytes / 1024) as f64;
    let units = ['K', 'M', 'G', 'T', 'P'];
    let mut u = 0;
    while s >= 1024.0 && u + 1 < units.len() {
        s /= 1024.0;
        u += 1;
    }
    let unit = units.get(u).copied().unwrap_or('P');
    if s < 10.0 {
        format!("{s:.1}{unit}")
    } else {
        format!("{s:.0}{unit}")
    }
}

/// A table with every column padded to its widest cell, cells joined by one space.
fn table(rows: &[Vec<String>]) -> String {
    let ncol = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..ncol)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(&cells.join(" "));
        out.push('\n');
    }
    out
}

struct PathView {
    hcil: String,
    dev: String,
    dev_t: String,
    dm_st: &'static str,
    chk_st: &'static str,
    dev_st: &'static str,
    wwid: String,
    in_map: bool,
}

impl World {
    fn path_view(&self, host: HostId, dev: &str, wwid: &str) -> PathView {
        let k = &self.host_ref(host).kernel;
        let d: Option<&ScsiDev> = k.disk_by_name(dev);
        let in_map = k.dms.values().any(|m| m.paths.iter().any(|p| p == dev));
        let offline = d.is_none_or(|d| self.scsi_route(host, d).is_none_or(|r| !r.up));
        let dev_t = d
            .and_then(|d| match d.kind {
                crate::kernel::DevKind::Disk { sd } => Some(sd_devt(sd)),
                crate::kernel::DevKind::Controller => None,
            })
            .map_or_else(|| "0:0".to_owned(), |(a, b)| format!("{a}:{b}"));
        let (dm_st, chk_st, dev_st) = match (in_map, offline) {
            (false, _) => ("undef", "undef", "unknown"),
            (true, false) => ("active", "ready", "running"),
            (true, true) => ("failed", "faulty", "offline"),
        };
        PathView {
            hcil: d.map_or_else(|| "#:#:#:#".to_owned(), |d| d.hctl.to_string()),
            dev: dev.to_owned(),
            dev_t,
            dm_st,
            chk_st,
            dev_st,
            wwid: wwid.to_owned(),
            in_map,
        }
    }

    fn map_listing(&self, host: HostId, m: &DmMap, with_checker: bool, friendly: bool) -> String {
        let mut out = String::new();
        let name = m.dev_name();
        let vendor = m.vendor.trim();
        let model = m.model.trim();
        if friendly && m.name != m.wwid {
            let _ = writeln!(out, "{} ({}) {name} {vendor},{model}", m.name, m.wwid);
        } else {
            let _ = writeln!(out, "{} {name} {vendor},{model}", m.name);
        }
        let _ = writeln!(
            out,
            "size={} features='0' hwhandler='0' wp=rw",
            size_str(m.size_bytes)
        );
        let views: Vec<PathView> = m
            .paths
            .iter()
            .map(|p| self.path_view(host, p, &m.wwid))
            .collect();
        let w = views.iter().map(|v| v.dev_t.len()).max().unwrap_or(0);
        let n = views.len();
        for (i, v) in views.iter().enumerate() {
            let last = i + 1 == n;
            let prio = if with_checker { 1 } else { 0 };
            let status = if i == 0 { "active" } else { "enabled" };
            let (g, p) = if last {
                ("`-+-", "  `-")
            } else {
                ("|-+-", "| `-")
            };
            let _ = writeln!(
                out,
                "{g} policy='service-time 0' prio={prio} status={status}"
            );
            let chk = if with_checker { v.chk_st } else { "undef" };
            let dm = if v.dm_st == "failed" {
                "failed"
            } else {
                "active"
            };
            let _ = writeln!(
                out,
                "{p} {} {} {:<w$} {dm} {chk} {}",
                v.hcil, v.dev, v.dev_t, v.dev_st
            );
        }
        out
    }

    pub(crate) fn multipath_cmd(&mut self, host: HostId, argv: &[String]) -> ExecOutput {
        let args: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
        let friendly = self.host_ref(host).spec.user_friendly_names;
        match args.as_slice() {
            ["-a", wwid] => {
                let wwid = (*wwid).to_owned();
                self.host_mut(host).mpd.wwids.insert(wwid.clone());
                ExecOutput::ok(format!("wwid '{wwid}' added\n"))
            }
            ["-w", wwid] => {
                let removed = self.host_mut(host).mpd.wwids.remove(*wwid);
                if removed {
                    ExecOutput::ok(format!("wwid '{wwid}' removed\n"))
                } else {
                    ExecOutput::err(1, format!("wwid '{wwid}' not in wwids file\n"))
                }
            }
            ["-f", key] => match self.flush_map(host, key) {
                Ok(()) => ExecOutput::ok(""),
                Err(FlushError::InUse) => ExecOutput::err(1, format!("{key}: map in use\n")),
                Err(FlushError::NoSuchMap) => {
                    ExecOutput::err(1, format!("{key}: map does not exist\n"))
                }
            },
            ["-F"] => {
                let keys: Vec<String> = self
                    .host_ref(host)
                    .kernel
                    .dms
                    .values()
                    .map(|m| m.name.clone())
                    .collect();
                let mut out = ExecOutput::ok("");
                for k in keys {
                    if self.flush_map(host, &k).is_err() {
                        out.status = 1;
                        let _ = writeln!(out.stderr, "{k}: map in use");
                    }
                }
                out
            }
            ["-C", key] => {
                let k = &self.host_ref(host).kernel;
                match self.find_map(host, key).and_then(|m| k.dms.get(&m)) {
                    Some(m)
                        if m.paths
                            .iter()
                            .any(|p| self.path_view(host, p, &m.wwid).dm_st == "active") =>
                    {
                        ExecOutput::ok("")
                    }
                    _ => ExecOutput::err(1, ""),
                }
            }
            ["-r"] | ["-r", _] | [] => ExecOutput::ok(""),
            [flag] | [flag, _] if *flag == "-l" || *flag == "-ll" => {
                let with_checker = *flag == "-ll";
                let k = &self.host_ref(host).kernel;
                let filter = args.get(1).map(|s| s.strip_prefix("/dev/").unwrap_or(s));
                let maps: Vec<&DmMap> = k
                    .dms
                    .values()
                    .filter(|m| {
                        filter.is_none_or(|f| {
                            m.name == f
                                || m.wwid == f
                                || m.dev_name() == f
                                || m.paths.iter().any(|p| p == f)
                                || f.strip_prefix("mapper/") == Some(m.name.as_str())
                        })
                    })
                    .collect();
                let mut out = String::new();
                for m in maps {
                    out.push_str(&self.map_listing(host, m, with_checker, friendly));
                }
                ExecOutput::ok(out)
            }
            _ => ExecOutput::err(1, format!("multipath: unsupported arguments {args:?}\n")),
        }
    }

    pub(crate) fn multipathd_cmd(&mut self, host: HostId, argv: &[String]) -> ExecOutput {
        if !self.host_ref(host).mpd.running {
            return ExecOutput {
                status: 1,
                stdout: String::new(),
                stderr: "error receiving packet\n".to_owned(),
            };
        }
        let words: Vec<&str> = argv
            .iter()
            .skip(1)
            .flat_map(|s| s.split_whitespace())
            .collect();
        let strip = |d: &str| d.strip_prefix("/dev/").unwrap_or(d).to_owned();
        match words.as_slice() {
            ["show", "status"] => {
                let n = self.host_ref(host).mpd.paths.len();
                ExecOutput::ok(format!(
                    "path checker states:\nup                  {n}\n\npaths: 0\nbusy: False\n"
                ))
            }
            ["show", "paths"] => {
                let views = self.mpd_paths(host);
                if views.is_empty() {
                    return ExecOutput::ok("ok\n");
                }
                let mut rows = vec![
                    [
                        "hcil",
                        "dev",
                        "dev_t",
                        "pri",
                        "dm_st",
                        "chk_st",
                        "dev_st",
                        "next_check",
                    ]
                    .map(str::to_owned)
                    .to_vec(),
                ];
                for v in views {
                    let next = if v.in_map {
                        "XX........ 2/10"
                    } else {
                        "orphan"
                    };
                    rows.push(vec![
                        v.hcil,
                        v.dev,
                        v.dev_t,
                        "1".into(),
                        v.dm_st.into(),
                        v.chk_st.into(),
                        v.dev_st.into(),
                        next.into(),
                    ]);
                }
                ExecOutput::ok(table(&rows))
            }
            ["show", "paths", "raw", "format", fmt @ ..] => {
                let fmt = fmt.join(" ");
                let views = self.mpd_paths(host);
                if views.is_empty() {
                    return ExecOutput::ok("ok\n");
                }
                let mut out = String::new();
                for v in views {
                    out.push_str(&expand(&fmt, |c| match c {
                        'd' => Some(v.dev.clone()),
                        'w' => Some(v.wwid.clone()),
                        'i' => Some(v.hcil.clone()),
                        'D' => Some(v.dev_t.clone()),
                        't' => Some(v.dm_st.to_owned()),
                        'T' => Some(v.chk_st.to_owned()),
                        'o' => Some(v.dev_st.to_owned()),
                        _ => None,
                    }));
                    out.push('\n');
                }
                ExecOutput::ok(out)
            }
            ["show", "maps"] => {
                let k = &self.host_ref(host).kernel;
                if k.dms.is_empty() {
                    return ExecOutput::ok("ok\n");
                }
                let mut rows = vec![vec![
                    "name".to_owned(),
                    "sysfs".to_owned(),
                    "uuid".to_owned(),
                ]];
                for m in k.dms.values() {
                    rows.push(vec![m.name.clone(), m.dev_name(), m.wwid.clone()]);
                }
                ExecOutput::ok(table(&rows))
            }
            ["show", "maps", "raw", "format", fmt @ ..] => {
                let fmt = fmt.join(" ");
                let k = &self.host_ref(host).kernel;
                if k.dms.is_empty() {
                    return ExecOutput::ok("ok\n");
                }
                let mut out = String::new();
                for m in k.dms.values() {
                    out.push_str(&expand(&fmt, |c| match c {
                        'n' => Some(m.name.clone()),
                        'w' => Some(m.wwid.clone()),
                        'd' => Some(m.dev_name()),
                        'N' => Some(m.paths.len().to_string()),
                        'S' => Some(size_str(m.size_bytes)),
                        _ => None,
                    }));
                    out.push('\n');
                }
                ExecOutput::ok(out)
            }
            ["add", "path", dev] => {
                if self.mpd_add_path(host, &strip(dev), true) {
                    ExecOutput::ok("ok\n")
                } else {
                    ExecOutput::err(1, "fail\n")
                }
            }
            ["del", "path", dev] | ["remove", "path", dev] => {
                let d = strip(dev);
                if self.host_ref(host).mpd.paths.contains_key(&d) {
                    self.mpd_remove_path(host, &d);
                    ExecOutput::ok("ok\n")
                } else {
                    ExecOutput::err(1, "fail\n")
                }
            }
            ["del", "map", key] | ["remove", "map", key] => match self.flush_map(host, key) {
                Ok(()) => ExecOutput::ok("ok\n"),
                Err(_) => ExecOutput {
                    status: 1,
                    stdout: "fail\n".into(),
                    stderr: String::new(),
                },
            },
            ["resize", "map", key] => {
                let Some(minor) = self.find_map(host, key) else {
                    return ExecOutput {
                        status: 1,
                        stdout: "fail\n".into(),
                        stderr: String::new(),
                    };
                };
                let h = self.host_mut(host);
                let sizes: Vec<u64> = h
                    .kernel
                    .dms
                    .get(&minor)
                    .map(|m| {
                        m.paths
                            .iter()
                            .filter_map(|p| h.kernel.disk_by_name(p))
                            .map(|d| d.size_bytes)
                            .collect()
                    })
                    .unwrap_or_default();
                if let (Some(min), Some(m)) =
                    (sizes.iter().min().copied(), h.kernel.dms.get_mut(&minor))
                {
                    m.size_bytes = min;
                }
                ExecOutput::ok("ok\n")
            }
            ["reconfigure"] => ExecOutput::ok("ok\n"),
            _ => ExecOutput {
                status: 1,
                stdout: String::new(),
                stderr: format!("multipathd: unknown command {words:?}\n"),
            },
        }
    }

    fn mpd_paths(&self, host: HostId) -> Vec<PathView> {
        self.host_ref(host)
            .mpd
            .paths
            .iter()
            .map(|(dev, p)| self.path_view(host, dev, &p.wwid))
            .collect()
    }
}

/// Expands `%x` wildcards; unknown ones are printed as-is.
fn expand(fmt: &str, f: impl Fn(char) -> Option<String>) -> String {
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(w) => match f(w) {
                Some(v) => out.push_str(&v),
                None => {
                    out.push('%');
                    out.push(w);
                }
            },
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_multipath() {
        assert_eq!(size_str(32 << 20), "32M");
        assert_eq!(size_str(2 << 30), "2.0G");
        assert_eq!(size_str(1536 << 20), "1.5G");
        assert_eq!(size_str(512), "0.0K");
    }

    #[test]
    fn expands_wildcards() {
        assert_eq!(
            expand("%d %w %q", |c| (c == 'd')
                .then(|| "sda".into())
                .or((c == 'w').then(|| "3x".into()))),
            "sda 3x %q"
        );
    }
}
