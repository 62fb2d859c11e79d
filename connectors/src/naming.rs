//! `/dev/disk/by-path` link names, as udev's `path_id` builds them, computed from the
//! connector's side (from connection properties, not from sysfs).
//!
//! The results are *file names* (no directory, no `/`): join them onto the by-path directory
//! with [`crate::HostPath::join`], which rejects anything that is not one path component.
//! The simulator has its own, independent copy of these rules.

use crate::ids::{Iqn, Portal, Wwpn};

/// Formats a LUN as udev's `path_id` does (`format_lun_number` in systemd's path_id.c, and
/// os-brick's `process_lun_id`): below 256 in decimal; otherwise
/// `0x%04x%04x00000000` of (`lun & 0xffff`, `(lun >> 16) & 0xffff`). Bits above 32 are
/// dropped, as in udev ("Linux only supports 32 bit luns" there).
///
/// Pass the LUN *after* the addressing mode was applied ([`crate::Lun::for_addressing`]).
pub fn format_lun(lun: u64) -> String {
    if lun < 256 {
        lun.to_string()
    } else {
        format!("0x{:04x}{:04x}00000000", lun & 0xffff, (lun >> 16) & 0xffff)
    }
}

/// The by-path file name of an iSCSI LUN over the default transport:
/// `ip-<address>:<port>-iscsi-<iqn>-lun-<lun>`, with the brackets of an IPv6 address removed
/// (udev forbids them; os-brick fix for bug 1092490).
///
/// With a non-default transport (iSER, offload) udev prefixes the name (e.g. `pci-...-`); the
/// connector then matches names that *end* with this one.
pub fn iscsi_by_path(portal: &Portal, iqn: &Iqn, lun_after_addressing: u64) -> String {
    format!(
        "ip-{}:{}-iscsi-{}-lun-{}",
        portal.address(),
        portal.port(),
        iqn,
        format_lun(lun_after_addressing)
    )
}

/// The by-path file name of a Fibre Channel LUN:
/// `[<platform>-]pci-<pci>-fc-0x<wwpn>-lun-<lun>`.
///
/// `pci` is the PCI id of the HBA (e.g. `0000:05:00.2`) and `platform` the optional platform
/// component (e.g. `platform-80040000000.peu0-c0`, already including its `platform-` prefix),
/// both as os-brick's `_get_pci_num` derives them from the HBA's sysfs path.
pub fn fc_by_path(
    pci: &str,
    platform: Option<&str>,
    wwpn: &Wwpn,
    lun_after_addressing: u64,
) -> String {
    let prefix = platform.map(|p| format!("{p}-")).unwrap_or_default();
    format!(
        "{prefix}pci-{pci}-fc-0x{wwpn}-lun-{}",
        format_lun(lun_after_addressing)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AddressingMode, Lun};
    use rstest::rstest;

    #[rstest]
    #[case(0, "0")]
    #[case(1, "1")]
    #[case(255, "255")]
    #[case(256, "0x0100000000000000")]
    #[case(16383, "0x3fff000000000000")]
    #[case(16384, "0x4000000000000000")]
    #[case(16384 + 300, "0x412c000000000000")]
    #[case(65535, "0xffff000000000000")]
    #[case(65536, "0x0000000100000000")]
    #[case(0x0001_4001, "0x4001000100000000")]
    #[case(u64::from(u32::MAX), "0xffffffff00000000")]
    #[case(1 << 32, "0x0000000000000000")]
    #[case(u64::MAX, "0xffffffff00000000")]
    fn lun_formatting_matches_path_id(#[case] lun: u64, #[case] expected: &str) {
        assert_eq!(format_lun(lun), expected);
    }

    #[rstest]
    #[case(AddressingMode::Transparent, 1, "1")]
    #[case(AddressingMode::Sam, 256, "0x0100000000000000")]
    #[case(AddressingMode::Sam2, 255, "255")]
    #[case(AddressingMode::Sam2, 256, "0x4100000000000000")]
    #[case(AddressingMode::Sam3Flat, 0, "0x4000000000000000")]
    #[case(AddressingMode::Sam3Flat, 1, "0x4001000000000000")]
    fn addressing_then_formatting(
        #[case] mode: AddressingMode,
        #[case] lun: u64,
        #[case] expected: &str,
    ) {
        assert_eq!(format_lun(Lun::new(lun).for_addressing(mode)), expected);
    }

    #[rstest]
    #[case(
        "10.0.2.15:3260",
        "iqn.2010-10.org.openstack:volume-00000001",
        1,
        "ip-10.0.2.15:3260-iscsi-iqn.2010-10.org.openstack:volume-00000001-lun-1"
    )]
    #[case(
        "10.10.220.253:3260,1",
        "iqn.2000-05.com.3pardata:21810002ac00383d",
        0,
        "ip-10.10.220.253:3260-iscsi-iqn.2000-05.com.3pardata:21810002ac00383d-lun-0"
    )]
    #[case(
        "[fe80::1]:3260",
        "iqn.2010-10.org.openstack:v",
        256,
        "ip-fe80::1:3260-iscsi-iqn.2010-10.org.openstack:v-lun-0x0100000000000000"
    )]
    fn iscsi_names(
        #[case] portal: &str,
        #[case] iqn: &str,
        #[case] lun: u64,
        #[case] expected: &str,
    ) {
        let portal: Portal = portal.parse().unwrap();
        let iqn: Iqn = iqn.parse().unwrap();
        let name = iscsi_by_path(&portal, &iqn, lun);
        assert_eq!(name, expected);
        assert!(!name.contains('/') && !name.contains('['));
    }

    #[rstest]
    #[case(
        "0000:05:00.2",
        None,
        "1234567890123456",
        1,
        "pci-0000:05:00.2-fc-0x1234567890123456-lun-1"
    )]
    #[case(
        "0000:05:00.2",
        Some("platform-80040000000.peu0-c0"),
        "0x1234567890ABCDEF",
        1,
        "platform-80040000000.peu0-c0-pci-0000:05:00.2-fc-0x1234567890abcdef-lun-1"
    )]
    #[case(
        "0000:05:00.2",
        None,
        "1234567890123456",
        16640,
        "pci-0000:05:00.2-fc-0x1234567890123456-lun-0x4100000000000000"
    )]
    fn fc_names(
        #[case] pci: &str,
        #[case] platform: Option<&str>,
        #[case] wwpn: &str,
        #[case] lun: u64,
        #[case] expected: &str,
    ) {
        let wwpn: Wwpn = wwpn.parse().unwrap();
        assert_eq!(fc_by_path(pci, platform, &wwpn, lun), expected);
    }
}
