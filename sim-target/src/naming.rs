//! Kernel and udev naming rules, implemented independently of the connectors.

use std::fmt;

/// An iSCSI portal: address (IPv6 without brackets) and TCP port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Portal {
    pub(crate) ip: String,
    pub(crate) port: u16,
}

impl Portal {
    /// Parses `ip`, `ip:port`, `[v6]`, `[v6]:port`; a `,tpgt` suffix is ignored.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let s = s.split(',').next()?.trim();
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return None;
        }
        if let Some(rest) = s.strip_prefix('[') {
            let (ip, after) = rest.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().ok()?,
                None if after.is_empty() => 3260,
                None => return None,
            };
            return (!ip.is_empty()).then(|| Self {
                ip: ip.to_owned(),
                port,
            });
        }
        match s.matches(':').count() {
            0 => Some(Self {
                ip: s.to_owned(),
                port: 3260,
            }),
            1 => {
                let (ip, port) = s.split_once(':')?;
                (!ip.is_empty()).then_some(())?;
                Some(Self {
                    ip: ip.to_owned(),
                    port: port.parse().ok()?,
                })
            }
            // A bare IPv6 address without brackets.
            _ => Some(Self {
                ip: s.to_owned(),
                port: 3260,
            }),
        }
    }

    pub(crate) fn is_v6(&self) -> bool {
        self.ip.contains(':')
    }

    /// `ip,port` as iscsiadm prints it in login messages and discovery addresses.
    pub(crate) fn comma(&self) -> String {
        format!("{},{}", self.ip, self.port)
    }
}

impl fmt::Display for Portal {
    /// `ip:port`, with brackets for IPv6 (iscsiadm's session and node listings).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_v6() {
            write!(f, "[{}]:{}", self.ip, self.port)
        } else {
            write!(f, "{}:{}", self.ip, self.port)
        }
    }
}

/// A SCSI address `H:C:T:L`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Hctl {
    pub(crate) host: u32,
    pub(crate) channel: u32,
    pub(crate) target: u32,
    pub(crate) lun: u64,
}

impl fmt::Display for Hctl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.host, self.channel, self.target, self.lun
        )
    }
}

impl Hctl {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let mut it = s.split(':');
        let h = it.next()?.parse().ok()?;
        let c = it.next()?.parse().ok()?;
        let t = it.next()?.parse().ok()?;
        let l = it.next()?.parse().ok()?;
        it.next().is_none().then_some(Self {
            host: h,
            channel: c,
            target: t,
            lun: l,
        })
    }
}

/// `sd` name for disk index `index`: sda..sdz, sdaa..sdzz, sdaaa.. (the kernel's bijective
/// base-26 `sd_format_disk_name`).
pub(crate) fn sd_name(index: u32) -> String {
    let mut n = u64::from(index) + 1;
    let mut letters = Vec::new();
    while n > 0 {
        n -= 1;
        letters.push(b'a' + (n % 26) as u8);
        n /= 26;
    }
    letters.reverse();
    format!("sd{}", String::from_utf8_lossy(&letters))
}

/// Inverse of [`sd_name`].
#[cfg(test)]
pub(crate) fn sd_index(name: &str) -> Option<u32> {
    let letters = name.strip_prefix("sd")?;
    if letters.is_empty() || letters.len() > 4 || !letters.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let mut n: u64 = 0;
    for b in letters.bytes() {
        n = n * 26 + u64::from(b - b'a') + 1;
    }
    u32::try_from(n - 1).ok()
}

/// The sd major for a group of 16 disks (`sd_major`): 8, 65..71, 128..135.
fn sd_major(group: u32) -> u32 {
    match group {
        0 => 8,
        1..=7 => 64 + group,
        _ => 128 + group - 8,
    }
}

/// `major:minor` of sd disk `index` (16 minors per disk), as `sd_probe` assigns them.
pub(crate) fn sd_devt(index: u32) -> (u32, u32) {
    let major = sd_major((index & 0xf0) >> 4);
    let minor = ((index & 0xf) << 4) | (index & 0xfff00);
    (major, minor)
}

/// udev `path_id` LUN formatting: decimal below 256, else `0x%04x%04x00000000`.
pub(crate) fn path_id_lun(lun: u64) -> String {
    if lun < 256 {
        format!("lun-{lun}")
    } else {
        format!(
            "lun-0x{:04x}{:04x}00000000",
            lun & 0xffff,
            (lun >> 16) & 0xffff
        )
    }
}

/// `/dev/disk/by-path` name of an iSCSI disk (brackets never appear: udev drops them).
pub(crate) fn by_path_name(portal: &Portal, iqn: &str, lun: u64) -> String {
    format!(
        "ip-{}:{}-iscsi-{}-{}",
        portal.ip,
        portal.port,
        iqn,
        path_id_lun(lun)
    )
}

/// udev's `ID_SERIAL`-style string cleanup: trim, spaces to `_`, drop unsafe bytes.
pub(crate) fn udev_clean(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .filter(|c| c.is_ascii_graphic() && *c != '/')
        .collect()
}

/// Right-pads (or truncates) to `n` bytes, as INQUIRY strings are.
pub(crate) fn pad(s: &str, n: usize) -> String {
    let mut out: String = s.chars().filter(char::is_ascii).take(n).collect();
    while out.len() < n {
        out.push(' ');
    }
    out
}

/// `mpatha`, `mpathb`, ... `mpathz`, `mpathaa`: multipath's alias for binding index `i`.
pub(crate) fn mpath_alias(i: u32) -> String {
    let s = sd_name(i);
    format!("mpath{}", s.trim_start_matches("sd"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(0, "sda")]
    #[case(25, "sdz")]
    #[case(26, "sdaa")]
    #[case(701, "sdzz")]
    #[case(702, "sdaaa")]
    fn sd_names(#[case] i: u32, #[case] name: &str) {
        assert_eq!(sd_name(i), name);
        assert_eq!(sd_index(name), Some(i));
    }

    #[rstest]
    #[case(0, (8, 0))]
    #[case(1, (8, 16))]
    #[case(15, (8, 240))]
    #[case(16, (65, 0))]
    #[case(127, (71, 240))]
    #[case(128, (128, 0))]
    #[case(256, (8, 256))]
    fn sd_dev_numbers(#[case] i: u32, #[case] devt: (u32, u32)) {
        assert_eq!(sd_devt(i), devt);
    }

    #[rstest]
    #[case(0, "lun-0")]
    #[case(255, "lun-255")]
    #[case(256, "lun-0x0100000000000000")]
    #[case(16385, "lun-0x4001000000000000")]
    #[case(0x1_0002, "lun-0x0002000100000000")]
    fn path_id_luns(#[case] lun: u64, #[case] s: &str) {
        assert_eq!(path_id_lun(lun), s);
    }

    #[test]
    fn portals_parse_and_print() {
        let p = Portal::parse("10.0.2.2:3260").unwrap();
        assert_eq!(p.to_string(), "10.0.2.2:3260");
        let v6 = Portal::parse("[fe80::1]:3261,1").unwrap();
        assert_eq!((v6.ip.as_str(), v6.port), ("fe80::1", 3261));
        assert_eq!(v6.to_string(), "[fe80::1]:3261");
        assert_eq!(
            by_path_name(&v6, "iqn.x:y", 1),
            "ip-fe80::1:3261-iscsi-iqn.x:y-lun-1"
        );
        assert_eq!(Portal::parse("10.0.2.2").unwrap().port, 3260);
        assert!(Portal::parse("10.0.2.2:99999").is_none());
        assert!(Portal::parse("[]:1").is_none());
        assert!(Portal::parse("").is_none());
    }

    #[test]
    fn aliases() {
        assert_eq!(mpath_alias(0), "mpatha");
        assert_eq!(mpath_alias(26), "mpathaa");
        assert_eq!(udev_clean(" VIRTUAL DISK  "), "VIRTUAL_DISK");
        assert_eq!(pad("IET", 8), "IET     ");
    }
}
