//! Another task's memory: `process_vm_readv`/`writev` in large batches, and
//! `/proc/PID/mem` for what they cannot reach (pages without read or write
//! permission).

use std::fs::OpenOptions;
use std::io::IoSliceMut;
use std::os::unix::fs::FileExt;

use nix::sys::uio::{process_vm_readv, process_vm_writev, RemoteIoVec};
use nix::unistd::Pid;

/// Reads `buf.len()` bytes at `addr` of task `pid`.
pub fn read(pid: i32, addr: u64, buf: &mut [u8]) -> std::io::Result<()> {
    let len = buf.len();
    let remote = [RemoteIoVec {
        base: addr as usize,
        len,
    }];
    let done = process_vm_readv(Pid::from_raw(pid), &mut [IoSliceMut::new(buf)], &remote)
        .unwrap_or_default();
    if done < len {
        let f = OpenOptions::new()
            .read(true)
            .open(format!("/proc/{pid}/mem"))?;
        f.read_exact_at(&mut buf[done..], addr + done as u64)?;
    }
    Ok(())
}

/// Writes `data` at `addr` of task `pid`.
pub fn write(pid: i32, addr: u64, data: &[u8]) -> std::io::Result<()> {
    let len = data.len();
    let remote = [RemoteIoVec {
        base: addr as usize,
        len,
    }];
    let done =
        process_vm_writev(Pid::from_raw(pid), &[std::io::IoSlice::new(data)], &remote).unwrap_or(0);
    if done < len {
        let f = OpenOptions::new()
            .write(true)
            .open(format!("/proc/{pid}/mem"))?;
        f.write_all_at(&data[done..], addr + done as u64)?;
    }
    Ok(())
}
