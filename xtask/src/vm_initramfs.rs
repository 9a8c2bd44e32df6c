//! The guest side of `cargo xtask vm`: a tiny initramfs (busybox, the few
//! modules needed to reach the host's files, and the two init stages).
//!
//! Stage 1 (`/init`, in the initramfs) loads the modules, mounts the host's
//! `/` (9p, read-only) under a tmpfs overlay, mounts the workspace's
//! `target/` (9p, writable) at the same path inside it, and switch_roots
//! into it. Stage 2 (`/.vm/stage2`, written into the overlay) mounts the
//! pseudo filesystems, runs the one command of the run and prints the end
//! marker with its exit code before powering off.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The line that ends every run: `@@criu-rs-vm: exit=N@@`.
pub const END_MARKER: &str = "@@criu-rs-vm: exit=";

/// Modules the guest needs before it can switch root (or builtin).
pub const BOOT_MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "overlay"];

/// Kernel command line keys read by the init stages.
pub const CMDLINE_TARGET: &str = "vm.target";
pub const CMDLINE_CMD: &str = "vm.cmd";
pub const CMDLINE_MODS: &str = "vm.mods";

/// Pulls the exit code out of an end-marker line.
pub fn parse_end_marker(line: &str) -> Option<i32> {
    let rest = line.trim().strip_prefix(END_MARKER)?;
    rest.strip_suffix("@@")?.parse().ok()
}

/// Stage 1, `/init` of the initramfs.
pub fn stage1_script() -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /sbin /usr/bin /usr/sbin /lower /up /newroot
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
fail() {{
    echo "vm-init: $*"
    echo "{END_MARKER}init-failed@@"
    poweroff -f
    sleep 5
}}
for m in $(cat /etc/vm-modules); do
    insmod "/lib/modules/$m" || echo "vm-init: insmod $m failed"
done
arg() {{ for a in $(cat /proc/cmdline); do case "$a" in "$1="*) echo "${{a#*=}}";; esac; done; }}
TARGET=$(arg {CMDLINE_TARGET})
CMD=$(arg {CMDLINE_CMD})
MODS=$(arg {CMDLINE_MODS})
[ -n "$TARGET" ] && [ -n "$CMD" ] || fail "no {CMDLINE_TARGET}= or {CMDLINE_CMD}= on the kernel command line"
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /lower \
    || fail "cannot mount the host's / (9p tag hostroot)"
mount -t tmpfs -o mode=0755 upper /up || fail "cannot mount the overlay's tmpfs"
mkdir -p /up/data /up/work
mount -t overlay -o lowerdir=/lower,upperdir=/up/data,workdir=/up/work overlay /newroot \
    || fail "cannot mount the overlay on the host's /"
mkdir -p "/newroot$TARGET"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=mmap target "/newroot$TARGET" \
    || fail "cannot mount the workspace's target/ (9p tag target) at $TARGET"
mkdir -p /newroot/.vm
cp /bin/busybox /newroot/.vm/busybox
cp /stage2 /newroot/.vm/stage2
ln -s busybox /newroot/.vm/modprobe
echo "$CMD" > /newroot/.vm/cmd
echo "$MODS" > /newroot/.vm/modules-dir
umount /proc /sys 2>/dev/null
umount /dev 2>/dev/null
exec switch_root /newroot /.vm/busybox sh /.vm/stage2
fail "switch_root failed"
"#
    )
}

/// Stage 2, `/.vm/stage2` in the new root (the host's `/` + overlay).
pub fn stage2_script(release: &str) -> String {
    format!(
        r#"BB=/.vm/busybox
end() {{
    $BB sync
    echo "{END_MARKER}$1@@"
    $BB poweroff -f
    $BB sleep 5
}}
$BB mount -t proc proc /proc || end init-failed
$BB mount -t sysfs sys /sys
$BB mount -t devtmpfs dev /dev
$BB mkdir -p /dev/pts /dev/shm /sys/fs/cgroup /run /tmp
$BB mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts
$BB ln -sf pts/ptmx /dev/ptmx 2>/dev/null
$BB mount -t tmpfs -o mode=1777 shm /dev/shm
$BB mount -t tmpfs -o mode=1777 tmp /tmp
$BB mount -t tmpfs -o mode=0755 run /run
$BB mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
$BB mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
$BB ip link set lo up 2>/dev/null
$BB hostname criu-rs-vm
# modules on demand from the cached kernel tree (busybox modprobe)
MODS=$($BB cat /.vm/modules-dir 2>/dev/null)
if [ -n "$MODS" ] && [ -d "$MODS" ]; then
    $BB mkdir -p /lib/modules/{release}
    $BB mount --bind "$MODS" /lib/modules/{release}
    echo /.vm/modprobe > /proc/sys/kernel/modprobe
fi
CMD=$($BB cat /.vm/cmd)
/bin/sh "$CMD" </dev/null
end $?
"#
    )
}

/// Module names as the kernel knows them (`9pnet-virtio` == `9pnet_virtio`).
fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    stem.replace('-', "_")
}

/// The parsed `modules.dep` of one kernel: module name -> (path, deps).
#[derive(Debug, Default)]
pub struct ModulesDep {
    paths: BTreeMap<String, String>,
    deps: BTreeMap<String, Vec<String>>,
    builtin: HashSet<String>,
}

impl ModulesDep {
    /// `dep` is the text of `modules.dep`, `builtin` of `modules.builtin`.
    pub fn parse(dep: &str, builtin: &str) -> Result<ModulesDep> {
        let mut m = ModulesDep::default();
        for (n, line) in dep.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let Some((path, deps)) = line.split_once(':') else {
                bail!("modules.dep line {}: no ':' in {line:?}", n + 1);
            };
            let name = module_name(path);
            m.paths.insert(name.clone(), path.to_string());
            m.deps.insert(
                name,
                deps.split_whitespace().map(|d| d.to_string()).collect(),
            );
        }
        m.builtin = builtin
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(module_name)
            .collect();
        Ok(m)
    }

    /// Paths (relative to the modules directory) to insmod, dependencies
    /// first, for the wanted modules. Builtin modules are left out; a
    /// module that is neither is an error.
    pub fn load_order(&self, wanted: &[&str]) -> Result<Vec<String>> {
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        for w in wanted {
            let w = w.replace('-', "_");
            if self.builtin.contains(&w) {
                continue;
            }
            if !self.paths.contains_key(&w) {
                bail!("module {w} is neither built in nor in modules.dep");
            }
            self.visit(&w, &mut seen, &mut order);
        }
        Ok(order)
    }

    fn visit(&self, name: &str, seen: &mut HashSet<String>, order: &mut Vec<String>) {
        if !seen.insert(name.to_string()) {
            return;
        }
        // modules.dep lists the whole closure; the last entry loads first
        for d in self.deps.get(name).into_iter().flatten().rev() {
            self.visit(&module_name(d), seen, order);
        }
        if let Some(p) = self.paths.get(name) {
            order.push(p.clone());
        }
    }
}

/// A `newc` cpio archive built in memory.
#[derive(Default)]
pub struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn header(&mut self, name: &str, mode: u32, size: usize, rdev: (u32, u32)) -> Result<()> {
        self.ino += 1;
        let size = u32::try_from(size).with_context(|| format!("{name}: too big for cpio"))?;
        let namesize = name.len() + 1;
        let mut h = String::with_capacity(110);
        let _ = write!(
            h,
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino, mode, 0, 0, 1, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0
        );
        self.buf.extend_from_slice(h.as_bytes());
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        Ok(())
    }

    fn pad(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }

    pub fn dir(&mut self, name: &str) -> Result<()> {
        self.header(name, 0o040755, 0, (0, 0))
    }

    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> Result<()> {
        self.header(name, 0o100000 | mode, data.len(), (0, 0))?;
        self.buf.extend_from_slice(data);
        self.pad();
        Ok(())
    }

    pub fn char_dev(&mut self, name: &str, mode: u32, major: u32, minor: u32) -> Result<()> {
        self.header(name, 0o020000 | mode, 0, (major, minor))
    }

    pub fn finish(mut self) -> Result<Vec<u8>> {
        self.header("TRAILER!!!", 0, 0, (0, 0))?;
        Ok(self.buf)
    }
}

/// Reads a module file, decompressing `.ko.xz`/`.ko.zst`/`.ko.gz` with
/// the host's tools (busybox insmod wants plain ELF).
fn read_module(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool: Option<&[&str]> = if name.ends_with(".xz") {
        Some(&["xz", "-dc"])
    } else if name.ends_with(".zst") {
        Some(&["zstd", "-dcq"])
    } else if name.ends_with(".gz") {
        Some(&["gzip", "-dc"])
    } else {
        None
    };
    match tool {
        None => std::fs::read(path).with_context(|| format!("reading module {}", path.display())),
        Some(t) => {
            let out = Command::new(t[0])
                .args(&t[1..])
                .arg(path)
                .output()
                .with_context(|| format!("running {} on {}", t[0], path.display()))?;
            if !out.status.success() {
                bail!(
                    "{} {} failed: {}",
                    t[0],
                    path.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            Ok(out.stdout)
        }
    }
}

/// Builds the initramfs for one kernel: `busybox` is the static busybox,
/// `modules_dir` the kernel's `lib/modules/<release>`.
pub fn build(busybox: &Path, modules_dir: &Path, release: &str) -> Result<Vec<u8>> {
    let read = |f: &str| -> Result<String> {
        let p = modules_dir.join(f);
        std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
    };
    let deps = ModulesDep::parse(&read("modules.dep")?, &read("modules.builtin")?)
        .with_context(|| format!("parsing {}", modules_dir.join("modules.dep").display()))?;
    let order = deps
        .load_order(BOOT_MODULES)
        .with_context(|| format!("the boot modules of kernel {release}"))?;

    let mut c = Cpio::default();
    for d in ["bin", "dev", "etc", "lib", "lib/modules", "proc", "sys"] {
        c.dir(d)?;
    }
    // the kernel opens /dev/console for init's stdio
    c.char_dev("dev/console", 0o600, 5, 1)?;
    let bb = std::fs::read(busybox).with_context(|| format!("reading {}", busybox.display()))?;
    c.file("bin/busybox", 0o755, &bb)?;
    c.file("init", 0o755, stage1_script().as_bytes())?;
    c.file("stage2", 0o644, stage2_script(release).as_bytes())?;
    let mut list = String::new();
    for (i, rel) in order.iter().enumerate() {
        let data = read_module(&modules_dir.join(rel))?;
        let name = format!("{i:02}-{}.ko", module_name(rel));
        c.file(&format!("lib/modules/{name}"), 0o644, &data)?;
        list.push_str(&name);
        list.push('\n');
    }
    c.file("etc/vm-modules", 0o644, list.as_bytes())?;
    c.finish()
}

/// Where `cargo xtask vm` keeps one kernel.
pub fn kernel_dir(target: &Path, name: &str) -> PathBuf {
    target.join("vm/kernels").join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/9p/9p.ko.xz: kernel/fs/netfs/netfs.ko.xz kernel/net/9p/9pnet.ko.xz
kernel/net/9p/9pnet.ko.xz:
kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz
kernel/fs/netfs/netfs.ko.xz:
kernel/fs/overlayfs/overlay.ko.xz:
kernel/drivers/virtio/virtio_pci.ko.xz: kernel/drivers/virtio/virtio_pci_legacy_dev.ko.xz kernel/drivers/virtio/virtio_pci_modern_dev.ko.xz
kernel/drivers/virtio/virtio_pci_legacy_dev.ko.xz:
kernel/drivers/virtio/virtio_pci_modern_dev.ko.xz:
";

    #[test]
    fn load_order_puts_dependencies_first_and_skips_builtins() {
        let m = ModulesDep::parse(DEP, "kernel/fs/overlayfs/overlay.ko\n").unwrap();
        let order = m.load_order(BOOT_MODULES).unwrap();
        let names: Vec<String> = order.iter().map(|p| module_name(p)).collect();
        assert_eq!(
            names,
            [
                "virtio_pci_modern_dev",
                "virtio_pci_legacy_dev",
                "virtio_pci",
                "9pnet",
                "9pnet_virtio",
                "netfs",
                "9p"
            ]
        );
    }

    #[test]
    fn a_missing_module_is_an_error() {
        let m = ModulesDep::parse(DEP, "").unwrap();
        let e = m.load_order(&["virtiofs"]).unwrap_err();
        assert!(e.to_string().contains("virtiofs"), "{e}");
        assert!(ModulesDep::parse("no colon here\n", "").is_err());
    }

    #[test]
    fn end_marker_round_trips() {
        assert_eq!(parse_end_marker("@@criu-rs-vm: exit=0@@\r"), Some(0));
        assert_eq!(parse_end_marker("  @@criu-rs-vm: exit=137@@"), Some(137));
        assert_eq!(parse_end_marker("@@criu-rs-vm: exit=init-failed@@"), None);
        assert_eq!(parse_end_marker("exit=0"), None);
    }

    #[test]
    fn cpio_entries_are_aligned_and_trailed() {
        let mut c = Cpio::default();
        c.dir("bin").unwrap();
        c.file("bin/x", 0o755, b"abcde").unwrap();
        let b = c.finish().unwrap();
        assert_eq!(b.len() % 4, 0);
        assert!(b.starts_with(b"070701"));
        let s = String::from_utf8_lossy(&b);
        assert!(s.contains("bin/x\0"));
        assert!(s.contains("abcde"));
        assert!(s.contains("TRAILER!!!\0"));
        // the file header says 5 bytes
        let at = s.find("bin/x").unwrap() - 110;
        assert_eq!(&s[at + 54..at + 62], "00000005");
    }
}
