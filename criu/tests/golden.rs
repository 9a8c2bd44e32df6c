//! Images written by upstream CRIU 4.2 (`/work/shared/golden-images`, or
//! `$CRIU_GOLDEN_IMAGES`): every one decodes with our typed messages and
//! re-encodes to exactly the same bytes; crit's JSON matches upstream crit's.

use criu::image::{magic, pb, ImageReader};
use prost::Message;
use std::path::{Path, PathBuf};

fn golden_root() -> PathBuf {
    if let Some(p) = std::env::var_os("CRIU_GOLDEN_IMAGES") {
        return PathBuf::from(p);
    }
    // The shared folder sits beside the checkout (worktrees are one level
    // deeper than the main checkout).
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        "../../shared/golden-images",
        "../../../shared/golden-images",
    ]
    .iter()
    .map(|r| manifest.join(r))
    .find(|p| p.is_dir())
    .unwrap_or_else(|| manifest.join("../../shared/golden-images"))
}

/// Every `(checkpoint, image path)` with a magic (pages-*.img are raw).
fn golden_images() -> Vec<(String, PathBuf)> {
    let root = golden_root();
    let mut v = Vec::new();
    let dirs = std::fs::read_dir(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    for d in dirs {
        let d = d.unwrap().path();
        let img = d.join("img");
        if !img.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&img).unwrap() {
            let p = f.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("pages-") {
                continue;
            }
            v.push((d.file_name().unwrap().to_string_lossy().into_owned(), p));
        }
    }
    v.sort();
    assert!(
        v.len() >= 60,
        "golden images missing under {}",
        root.display()
    );
    v
}

/// Decodes `body` as `M` and encodes it again; also the length of the raw
/// payload the entry announces.
fn rt<M: Message + Default>(body: &[u8], extra: impl Fn(&M) -> u64) -> (Vec<u8>, u64) {
    let m = M::decode(body).unwrap_or_else(|e| panic!("{}: {e}", std::any::type_name::<M>()));
    (m.encode_to_vec(), extra(&m))
}

fn none<M>(_: &M) -> u64 {
    0
}

fn typed_round_trip(mg: u32, index: usize, body: &[u8]) -> (Vec<u8>, u64) {
    match mg {
        magic::INVENTORY => rt::<pb::InventoryEntry>(body, none),
        magic::CORE => rt::<pb::CoreEntry>(body, none),
        magic::IDS => rt::<pb::TaskKobjIdsEntry>(body, none),
        magic::FS => rt::<pb::FsEntry>(body, none),
        magic::MM => rt::<pb::MmEntry>(body, none),
        magic::PAGEMAP if index == 0 => rt::<pb::PagemapHead>(body, none),
        magic::PAGEMAP => rt::<pb::PagemapEntry>(body, none),
        magic::PSTREE => rt::<pb::PstreeEntry>(body, none),
        magic::FILES => rt::<pb::FileEntry>(body, none),
        magic::FDINFO => rt::<pb::FdinfoEntry>(body, none),
        magic::SECCOMP => rt::<pb::SeccompEntry>(body, none),
        magic::TIMENS => rt::<pb::TimensEntry>(body, none),
        magic::STATS => rt::<pb::StatsEntry>(body, none),
        magic::MEMFD_INODE => rt::<pb::MemfdInodeEntry>(body, none),
        magic::PIPES_DATA => rt::<pb::PipeDataEntry>(body, |e| u64::from(e.bytes)),
        magic::SK_QUEUES => rt::<pb::SkPacketEntry>(body, |e| u64::from(e.length)),
        magic::TCP_STREAM => {
            rt::<pb::TcpStreamEntry>(body, |e| u64::from(e.inq_len) + u64::from(e.outq_len))
        }
        other => panic!("no typed message for magic {other:#x} in this test"),
    }
}

#[test]
fn golden_images_re_encode_to_the_same_bytes() {
    for (ckpt, path) in golden_images() {
        let orig = std::fs::read(&path).unwrap();
        let mut r = ImageReader::open_path(&path).unwrap();
        let mg = r.magic();
        let mut out = orig[..r.offset() as usize].to_vec();
        let mut index = 0;
        while let Some((_, body)) = r.next_raw().unwrap() {
            let (enc, extra) = typed_round_trip(mg, index, &body);
            assert_eq!(
                enc,
                body,
                "{ckpt}/{}: entry {index} differs",
                path.display()
            );
            out.extend_from_slice(&(enc.len() as u32).to_le_bytes());
            out.extend_from_slice(&enc);
            out.extend_from_slice(&r.read_raw(extra).unwrap());
            index += 1;
        }
        assert!(index > 0, "{}: no entries", path.display());
        assert_eq!(out, orig, "{}: re-encoded file differs", path.display());
    }
}

#[test]
fn golden_core_has_x86_state() {
    let dir = golden_root().join("threads/img");
    let cores: Vec<pb::CoreEntry> =
        criu::image::read_image(&dir, "core-20205.img", magic::CORE).unwrap();
    assert_eq!(cores.len(), 1);
    let ti = cores[0].thread_info.as_ref().expect("x86 thread info");
    assert_ne!(ti.gpregs.ip, 0);
    assert!(ti.fpregs.xsave.is_some());
    let pstree: Vec<pb::PstreeEntry> =
        criu::image::read_image(&dir, "pstree.img", magic::PSTREE).unwrap();
    assert_eq!(pstree[0].pid, 20205);
    assert_eq!(pstree[0].threads.len(), 4);
}

/// Our crit's JSON for every golden image equals upstream crit's, value for
/// value and character for character; encoding it gives the image back.
#[test]
fn golden_json_matches_upstream_crit_and_encodes_back() {
    use criu::image::json;
    let mut failures = Vec::new();
    for (ckpt, path) in golden_images() {
        let orig = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let stem = name.strip_suffix(".img").unwrap_or(&name);
        let jpath = path
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("json")
            .join(format!("{stem}.json"));
        let want_text = std::fs::read_to_string(&jpath).unwrap();
        let want: serde_json::Value = serde_json::from_str(&want_text).unwrap();
        let got = json::decode_image(&path, orig.clone(), true).unwrap();
        if got != want {
            failures.push(format!(
                "{ckpt}/{name}: JSON differs:\n{}",
                json::to_python_json(&got, true)
            ));
            continue;
        }
        let text = json::to_python_json(&got, true);
        if text.trim_end() != want_text.trim_end() {
            failures.push(format!("{ckpt}/{name}: JSON text differs"));
        }
        let back = json::encode_image(&path, &want).unwrap();
        if back != orig {
            failures.push(format!(
                "{ckpt}/{name}: encode of the JSON differs from the image"
            ));
        }
        let plain = json::decode_image(&path, orig.clone(), false).unwrap();
        if json::encode_image(&path, &plain).unwrap() != orig {
            failures.push(format!("{ckpt}/{name}: encode of the plain JSON differs"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
