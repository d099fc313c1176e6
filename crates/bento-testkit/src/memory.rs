//! How much memory a process took, for tests that promise a bound.

/// The peak resident set (`VmHWM`) of process `pid` so far, in KiB; `None` where `/proc` does
/// not say (not Linux, or the process is gone).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_a_peak() {
        let peak = super::peak_rss_kib(std::process::id()).expect("a VmHWM line");
        assert!(peak > 0);
    }
}
