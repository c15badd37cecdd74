//! CPU time, resident memory and open files of a process, and the machine's local ports and
//! TIME_WAIT sockets, from `/proc` (Linux).

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on every Linux we run on).
const TICKS_PER_SEC: f64 = 100.0;

/// User + system CPU seconds of `pid` (`None` = this process) so far.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", proc_dir(pid))).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5): 12 and 13 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SEC)
}

/// Resident set size of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The soft limit on open files of `pid` (`None` = this process), from `/proc/<pid>/limits`
/// (`unlimited` reads as `u64::MAX`).
pub fn open_files_limit(pid: Option<u32>) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", proc_dir(pid))).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .strip_prefix("Max open files")?
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

/// The files `pid` (`None` = this process) has open now.
pub fn open_files(pid: Option<u32>) -> Option<u64> {
    let dir = std::fs::read_dir(format!("/proc/{}/fd", proc_dir(pid))).ok()?;
    Some(dir.count() as u64)
}

/// How many local ports one source address can give outgoing connections: the size of
/// `net.ipv4.ip_local_port_range`.
pub fn local_ports() -> Option<u64> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut bounds = range.split_whitespace().map(str::parse::<u64>);
    let (low, high) = (bounds.next()?.ok()?, bounds.next()?.ok()?);
    high.checked_sub(low).map(|d| d + 1)
}

/// TCP sockets in TIME_WAIT on this machine (its network namespace): each holds its local
/// port for 60 s after the connection closed.
pub fn time_wait_sockets() -> Option<u64> {
    sockstat_tcp("tw")
}

/// Memory the kernel holds for TCP sockets on this machine (buffers of data sent and not yet
/// read, among others), in KiB: pages of 4 KiB.
pub fn kernel_tcp_kib() -> Option<u64> {
    sockstat_tcp("mem").map(|pages| pages * 4)
}

/// A figure of the `TCP:` line of `/proc/net/sockstat` (`inuse`, `orphan`, `tw`, `alloc`,
/// `mem`).
fn sockstat_tcp(name: &str) -> Option<u64> {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let tcp = sockstat.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = tcp.split_whitespace();
    words.find(|w| *w == name)?;
    words.next()?.parse().ok()
}

fn proc_dir(pid: Option<u32>) -> String {
    pid.map_or_else(|| "self".to_owned(), |p| p.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_cpu_and_rss() {
        assert!(super::cpu_seconds(None).is_some());
        assert!(super::rss_kib(std::process::id()).is_some_and(|r| r > 0));
    }

    #[test]
    fn reads_open_files_and_their_limit() {
        let open = super::open_files(None).unwrap_or(0);
        // Standard input, output and error at least; the same process read by its PID.
        assert!(open >= 3, "{open}");
        let limit = super::open_files_limit(None).unwrap_or(0);
        assert!(limit >= open, "{limit} < {open}");
        assert_eq!(
            super::open_files_limit(Some(std::process::id())),
            Some(limit)
        );
        assert!(super::local_ports().is_some_and(|p| p > 0));
        assert!(super::time_wait_sockets().is_some());
        assert!(super::kernel_tcp_kib().is_some());
    }
}
