//! Framed image files.
//!
//! Layout: `[IMG_COMMON | IMG_SERVICE] magic` (each a `u32` LE; the first is
//! absent in `inventory.img`), then entries, each a `u32` LE length followed
//! by that many bytes of protobuf. A few images put raw payload after some
//! entries ([`ImageReader::read_raw`], [`ImageWriter::write_raw`]).

use super::{magic, Error, Result};
use std::fs::File;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

/// Largest entry (or raw payload) a reader accepts: 64 MiB.
pub const MAX_ENTRY_SIZE: u64 = 64 << 20;

fn type_name<M>() -> &'static str {
    let n = std::any::type_name::<M>();
    n.rsplit("::").next().unwrap_or(n)
}

/// Reads an image file entry by entry.
pub struct ImageReader {
    file: PathBuf,
    inner: Box<dyn Read + Send>,
    offset: u64,
    size: u64,
    magic: u32,
}

impl std::fmt::Debug for ImageReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageReader")
            .field("file", &self.file)
            .field("offset", &self.offset)
            .field("size", &self.size)
            .field("magic", &format_args!("{:#x}", self.magic))
            .finish()
    }
}

impl ImageReader {
    /// Opens `dir/file` and checks that it carries `magic`.
    pub fn open(dir: &Path, file: &str, magic: u32) -> Result<Self> {
        let r = Self::open_path(&dir.join(file))?;
        if r.magic != magic {
            return Err(r.format_err(
                r.offset.saturating_sub(4),
                format!("magic {:#x}, expected {:#x}", r.magic, magic),
            ));
        }
        Ok(r)
    }

    /// Opens an image of any kind; [`ImageReader::magic`] says which.
    pub fn open_path(path: &Path) -> Result<Self> {
        let f = File::open(path).map_err(|source| Error::Io {
            file: path.to_owned(),
            op: "open",
            source,
        })?;
        let size = f
            .metadata()
            .map_err(|source| Error::Io {
                file: path.to_owned(),
                op: "stat",
                source,
            })?
            .len();
        Self::from_reader(path.to_owned(), Box::new(BufReader::new(f)), size)
    }

    /// Reads an image held in memory; `name` is used in errors.
    pub fn from_bytes(name: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self> {
        let size = bytes.len() as u64;
        Self::from_reader(name.into(), Box::new(std::io::Cursor::new(bytes)), size)
    }

    fn from_reader(file: PathBuf, inner: Box<dyn Read + Send>, size: u64) -> Result<Self> {
        let mut r = ImageReader {
            file,
            inner,
            offset: 0,
            size,
            magic: 0,
        };
        let first = r.read_u32("image magic")?;
        let magic = if first == magic::IMG_COMMON || first == magic::IMG_SERVICE {
            r.read_u32("image magic")?
        } else if first == magic::INVENTORY {
            first
        } else {
            return Err(r.format_err(0, format!("unknown image magic {first:#x}")));
        };
        r.magic = magic;
        Ok(r)
    }

    /// The image's own magic (the second one, or the only one).
    pub fn magic(&self) -> u32 {
        self.magic
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// Offset of the next byte to read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes left in the file.
    pub fn remaining(&self) -> u64 {
        self.size.saturating_sub(self.offset)
    }

    fn format_err(&self, offset: u64, what: String) -> Error {
        Error::Format {
            file: self.file.clone(),
            offset,
            what,
        }
    }

    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        let start = self.offset;
        let mut done = 0;
        while done < buf.len() {
            match self.inner.read(&mut buf[done..]) {
                Ok(0) => {
                    return Err(self.format_err(
                        start,
                        format!("truncated {what}: {} of {} bytes", done, buf.len()),
                    ))
                }
                Ok(n) => {
                    done += n;
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(Error::Io {
                        file: self.file.clone(),
                        op: "read",
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    fn read_u32(&mut self, what: &str) -> Result<u32> {
        let mut b = [0u8; 4];
        self.fill(&mut b, what)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads the next length-prefixed entry as raw bytes, with the offset of
    /// its length word. `None` at a clean end of file.
    pub fn next_raw(&mut self) -> Result<Option<(u64, Vec<u8>)>> {
        let at = self.offset;
        let mut b = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.inner.read(&mut b[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => {
                    return Err(
                        self.format_err(at, format!("truncated entry length: {got} of 4 bytes"))
                    )
                }
                Ok(n) => {
                    got += n;
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(Error::Io {
                        file: self.file.clone(),
                        op: "read",
                        source,
                    })
                }
            }
        }
        let len = u64::from(u32::from_le_bytes(b));
        let body = self.read_raw(len).map_err(|e| match e {
            Error::Format { file, what, .. } => Error::Format {
                file,
                offset: at,
                what: format!("entry: {what}"),
            },
            e => e,
        })?;
        Ok(Some((at, body)))
    }

    /// Reads `len` bytes of raw payload (after an entry that announces it).
    pub fn read_raw(&mut self, len: u64) -> Result<Vec<u8>> {
        if len > MAX_ENTRY_SIZE {
            return Err(self.format_err(
                self.offset,
                format!("size {len} is over the limit of {MAX_ENTRY_SIZE}"),
            ));
        }
        if len > self.remaining() {
            return Err(self.format_err(
                self.offset,
                format!(
                    "size {len} is past the end of the file ({} bytes left)",
                    self.remaining()
                ),
            ));
        }
        let mut buf = vec![0u8; len as usize];
        self.fill(&mut buf, "payload")?;
        Ok(buf)
    }

    /// Reads everything left in the file (bounded by [`MAX_ENTRY_SIZE`]).
    pub fn read_rest(&mut self) -> Result<Vec<u8>> {
        let n = self.remaining();
        self.read_raw(n)
    }

    /// Reads and decodes the next entry; `None` at a clean end of file.
    #[allow(clippy::should_implement_trait)] // the name the rest of criu codes against
    pub fn next<M: prost::Message + Default>(&mut self) -> Result<Option<M>> {
        let Some((at, body)) = self.next_raw()? else {
            return Ok(None);
        };
        M::decode(body.as_slice())
            .map(Some)
            .map_err(|source| Error::Decode {
                file: self.file.clone(),
                offset: at,
                msg: type_name::<M>(),
                source,
            })
    }
}

/// Writes an image file entry by entry.
#[derive(Debug)]
pub struct ImageWriter {
    file: PathBuf,
    out: BufWriter<File>,
}

impl ImageWriter {
    /// Creates (or truncates) `dir/file` and writes its magic(s).
    pub fn create(dir: &Path, file: &str, magic: u32) -> Result<Self> {
        let path = dir.join(file);
        let f = File::create(&path).map_err(|source| Error::Io {
            file: path.clone(),
            op: "create",
            source,
        })?;
        let mut w = ImageWriter {
            file: path,
            out: BufWriter::with_capacity(64 << 10, f),
        };
        if let Some(first) = magic::first_magic(magic) {
            w.write_raw(&first.to_le_bytes())?;
        }
        w.write_raw(&magic.to_le_bytes())?;
        Ok(w)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// Appends one entry.
    pub fn write<M: prost::Message>(&mut self, m: &M) -> Result<()> {
        let len = m.encoded_len();
        let len32 = u32::try_from(len).map_err(|_| Error::Format {
            file: self.file.clone(),
            offset: 0,
            what: format!("entry of {len} bytes is too large"),
        })?;
        let mut buf = Vec::with_capacity(4 + len);
        buf.extend_from_slice(&len32.to_le_bytes());
        // Encoding into a Vec cannot run out of room.
        m.encode_raw(&mut buf);
        self.write_raw(&buf)
    }

    /// Appends an entry already encoded.
    pub fn write_encoded(&mut self, body: &[u8]) -> Result<()> {
        let len = u32::try_from(body.len()).map_err(|_| Error::Format {
            file: self.file.clone(),
            offset: 0,
            what: format!("entry of {} bytes is too large", body.len()),
        })?;
        self.write_raw(&len.to_le_bytes())?;
        self.write_raw(body)
    }

    /// Appends raw bytes (payload that follows some entries).
    pub fn write_raw(&mut self, data: &[u8]) -> Result<()> {
        self.out.write_all(data).map_err(|source| Error::Io {
            file: self.file.clone(),
            op: "write",
            source,
        })
    }

    /// Flushes the file to the kernel; errors that dropping would hide
    /// show up here. No fsync, as CRIU does none.
    pub fn finish(self) -> Result<()> {
        let file = self.file;
        self.out.into_inner().map_err(|e| Error::Io {
            file,
            op: "flush",
            source: e.into_error(),
        })?;
        Ok(())
    }
}

/// Writes `dir/file` with `magic` and these entries.
pub fn write_image<'a, M: prost::Message + 'a>(
    dir: &Path,
    file: &str,
    magic: u32,
    entries: impl IntoIterator<Item = &'a M>,
) -> Result<()> {
    let mut w = ImageWriter::create(dir, file, magic)?;
    for e in entries {
        w.write(e)?;
    }
    w.finish()
}

/// Reads every entry of `dir/file`, which must carry `magic`.
pub fn read_image<M: prost::Message + Default>(
    dir: &Path,
    file: &str,
    magic: u32,
) -> Result<Vec<M>> {
    let mut r = ImageReader::open(dir, file, magic)?;
    let mut v = Vec::new();
    while let Some(m) = r.next()? {
        v.push(m);
    }
    Ok(v)
}

/// Reads the single entry of `dir/file`; none or more than one is an error.
pub fn read_one<M: prost::Message + Default>(dir: &Path, file: &str, magic: u32) -> Result<M> {
    let mut r = ImageReader::open(dir, file, magic)?;
    let at = r.offset();
    let Some(m) = r.next()? else {
        return Err(r.format_err(at, format!("no {} entry", type_name::<M>())));
    };
    let at = r.offset();
    if r.next_raw()?.is_some() {
        return Err(r.format_err(at, format!("more than one {} entry", type_name::<M>())));
    }
    Ok(m)
}
