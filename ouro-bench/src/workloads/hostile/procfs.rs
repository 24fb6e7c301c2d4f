//! What `/proc` says about a server process from outside: its memory, its
//! open fds and, on io_uring, the slots of its rings' fixed file tables in
//! use (which hold accepted connections without any process fd).

use std::fs;
use std::io;

/// A server's resources at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// Resident memory (`VmRSS`), KiB.
    pub rss_kb: u64,
    /// Highest resident memory so far (`VmHWM`), KiB.
    pub hwm_kb: u64,
    /// Open process fds.
    pub fds: usize,
    /// Fixed-file-table slots in use, over every io_uring of the process.
    pub slots: usize,
    /// io_uring instances the process holds.
    pub rings: usize,
}

/// Reads `pid`'s resources; fails once the process is gone.
pub fn resources(pid: u32) -> io::Result<Resources> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let mut found = Resources {
        rss_kb: status_kb(&status, "VmRSS:").unwrap_or(0),
        hwm_kb: status_kb(&status, "VmHWM:").unwrap_or(0),
        ..Resources::default()
    };
    for entry in fs::read_dir(format!("/proc/{pid}/fd"))? {
        // An fd closed while the directory is read is simply not counted.
        let Ok(entry) = entry else { continue };
        found.fds += 1;
        let is_ring = fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy() == "anon_inode:[io_uring]");
        if !is_ring {
            continue;
        }
        found.rings += 1;
        let fd = entry.file_name();
        let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.to_string_lossy()));
        found.slots += info.map(|info| fixed_slots_in_use(&info)).unwrap_or(0);
    }
    Ok(found)
}

/// A `Vm…:` line of `/proc/PID/status`, in KiB.
pub fn status_kb(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// The slots in use in an io_uring fd's `fdinfo`: the kernel lists each
/// occupied slot as `  N: <file>` after `UserFiles:` (which gives the
/// table's size, used or not), up to `UserBufs:`.
pub fn fixed_slots_in_use(fdinfo: &str) -> usize {
    fdinfo
        .lines()
        .skip_while(|line| !line.starts_with("UserFiles:"))
        .skip(1)
        .take_while(|line| !line.starts_with("UserBufs:"))
        .filter(|line| is_slot_line(line))
        .count()
}

fn is_slot_line(line: &str) -> bool {
    line.split_once(':').is_some_and(|(index, _)| {
        !index.trim().is_empty() && index.trim().bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FDINFO: &str = "pos:\t0\nSqMask:\t0xff\nUserFiles:\t20000\n    0: socket:[627995]\n    1: socket:[627996]\n   17: socket:[627997]\nUserBufs:\t0\nPollList:\n  op=13, task_works=0\nCqOverflowList:\n";

    #[test]
    fn fixed_slots_are_the_listed_files_not_the_table_size() {
        assert_eq!(fixed_slots_in_use(FDINFO), 3);
        assert_eq!(fixed_slots_in_use("UserFiles:\t20000\nUserBufs:\t0\n"), 0);
        assert_eq!(fixed_slots_in_use("pos:\t0\n"), 0);
    }

    #[test]
    fn status_lines_give_kib() {
        let status = "Name:\techo\nVmHWM:\t    3348 kB\nVmRSS:\t    3100 kB\n";
        assert_eq!(status_kb(status, "VmRSS:"), Some(3100));
        assert_eq!(status_kb(status, "VmHWM:"), Some(3348));
        assert_eq!(status_kb(status, "VmSwap:"), None);
    }

    #[test]
    fn this_process_is_measured() {
        let own = resources(std::process::id()).expect("our own /proc entry");
        assert!(own.fds >= 3, "{own:?}");
        assert!(own.rss_kb > 0 && own.hwm_kb >= own.rss_kb, "{own:?}");
    }
}
