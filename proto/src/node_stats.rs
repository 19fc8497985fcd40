//! The figures a node reports in `NodeService.NodeStats` (memory and disk), read from the
//! operating system. Both roles answer the same message, so it is built here, once.

use std::path::{Path, PathBuf};

use crate::v1::NodeStatsResponse;

/// [`collect`] on the blocking pool, for a `NodeStats` handler.
pub async fn collect_blocking(data_dir: PathBuf) -> Result<NodeStatsResponse, tonic::Status> {
    tokio::task::spawn_blocking(move || collect(&data_dir))
        .await
        .map_err(|e| tonic::Status::internal(format!("collecting node figures failed: {e}")))
}

/// Collects this process's resident memory, the machine's memory, and the size and free space
/// of `data_dir`. Figures the system does not give are 0.
pub fn collect(data_dir: &Path) -> NodeStatsResponse {
    let (disk_total_bytes, disk_available_bytes) = file_system(data_dir).unwrap_or((0, 0));
    NodeStatsResponse {
        heap_used_bytes: resident_bytes().unwrap_or(0),
        heap_max_bytes: physical_memory().unwrap_or(0),
        disk_used_bytes: directory_size(data_dir),
        disk_total_bytes,
        disk_available_bytes,
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// The machine's physical memory in bytes.
pub fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    (pages > 0).then(|| pages as u64 * page_size())
}

fn file_system(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own and reads a NUL-terminated path.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let block = stat.f_frsize as u64;
    Some((stat.f_blocks as u64 * block, stat.f_bavail as u64 * block))
}

fn directory_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => directory_size(&entry.path()),
            Ok(_) => entry.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}
