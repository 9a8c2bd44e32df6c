//! Logging of a served request: each request names its own log file and
//! level (`log_file`, `log_level`, `log_to_stderr`), so the sink and the
//! level can change between requests of one `criu swrk`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use tracing_subscriber::fmt::MakeWriter;

/// Where log lines go now: a file, stderr, or nowhere.
enum Target {
    Off,
    Stderr,
    File(File),
}

static TARGET: Mutex<Target> = Mutex::new(Target::Off);
static LEVEL: AtomicU8 = AtomicU8::new(2);

/// CRIU's log level (0 errors … 4 debug) as a tracing level.
fn allowed(meta: &tracing::Metadata<'_>) -> bool {
    let lvl = match *meta.level() {
        tracing::Level::ERROR => 1,
        tracing::Level::WARN => 2,
        tracing::Level::INFO => 3,
        tracing::Level::DEBUG => 4,
        tracing::Level::TRACE => 5,
    };
    lvl <= LEVEL.load(Ordering::Relaxed).max(1)
}

/// The writer handed to tracing-subscriber: appends to the current target.
pub struct Sink {
    on: bool,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.on {
            return Ok(buf.len());
        }
        let mut t = TARGET.lock().map_err(|_| std::io::ErrorKind::Other)?;
        match &mut *t {
            Target::Off => Ok(buf.len()),
            Target::Stderr => std::io::stderr().write(buf),
            Target::File(f) => f.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Make;

impl<'a> MakeWriter<'a> for Make {
    type Writer = Sink;
    fn make_writer(&'a self) -> Sink {
        Sink { on: true }
    }
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Sink {
        Sink { on: allowed(meta) }
    }
}

/// Installs the process-wide subscriber of the RPC server (once).
pub fn init() {
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(Make)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}

/// Sends the log of the next request to `path` (appended), to stderr, or
/// nowhere, at `level`.
pub fn set(path: Option<&Path>, stderr: bool, level: i32) -> std::io::Result<()> {
    let target = if stderr {
        Target::Stderr
    } else if let Some(p) = path {
        Target::File(OpenOptions::new().create(true).append(true).open(p)?)
    } else {
        Target::Off
    };
    LEVEL.store(level.clamp(0, 5) as u8, Ordering::Relaxed);
    if let Ok(mut t) = TARGET.lock() {
        *t = target;
    }
    Ok(())
}
