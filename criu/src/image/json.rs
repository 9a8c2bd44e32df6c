//! crit's JSON: images to and from the JSON upstream crit prints
//! (`{"magic": "CORE", "entries": [...]}`).
//!
//! Messages are walked through the descriptor set built from our `.proto`
//! files; the `(criu)` field options decide how a value is rendered when
//! `pretty` is set: `hex` as `"0x…"`, `flags` as `"A | B"`, `dict` by name,
//! `dev` as `"major:minor"`, `ipadd` as an address. Bytes are base64 (with
//! a line break every 76 characters, as Python's `base64.encodebytes`),
//! enums by name. Raw payload after entries goes to an `"extra"` key.

use super::{magic, Error, ImageReader, Result, DESCRIPTOR_SET};
use base64::Engine as _;
use prost::Message as _;
use prost_reflect::{
    Cardinality, DescriptorPool, DynamicMessage, ExtensionDescriptor, FieldDescriptor, Kind,
    MessageDescriptor, ReflectMessage, Value,
};
use serde_json::{json, Map, Value as Json};
use std::path::Path;
use std::sync::OnceLock;

/// The descriptor pool of all image messages.
pub fn pool() -> std::result::Result<&'static DescriptorPool, String> {
    static POOL: OnceLock<std::result::Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(DESCRIPTOR_SET).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

/// The `(criu)` options of one field.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CriuOpts {
    pub hex: bool,
    pub ipadd: bool,
    pub flags: Option<String>,
    pub dev: bool,
    pub odev: bool,
    pub dict: Option<String>,
    pub conv: Option<String>,
}

fn criu_ext(pool: &DescriptorPool) -> Option<ExtensionDescriptor> {
    pool.get_extension_by_name("criu.criu")
}

/// Reads the `(criu)` options of `field`.
pub fn criu_opts(field: &FieldDescriptor) -> CriuOpts {
    let mut o = CriuOpts::default();
    let Some(ext) = criu_ext(field.parent_pool()) else {
        return o;
    };
    let opts = field.options();
    if !opts.has_extension(&ext) {
        return o;
    }
    if let Value::Message(m) = &*opts.get_extension(&ext) {
        for (f, v) in m.fields() {
            match (f.name(), v) {
                ("hex", Value::Bool(b)) => o.hex = *b,
                ("ipadd", Value::Bool(b)) => o.ipadd = *b,
                ("dev", Value::Bool(b)) => o.dev = *b,
                ("odev", Value::Bool(b)) => o.odev = *b,
                ("flags", Value::String(s)) => o.flags = Some(s.clone()),
                ("dict", Value::String(s)) => o.dict = Some(s.clone()),
                ("conv", Value::String(s)) => o.conv = Some(s.clone()),
                _ => {}
            }
        }
    }
    o
}

// ---- tables of names (facts of upstream crit) ----

const MMAP_PROT: &[(&str, u64)] = &[("PROT_READ", 0x1), ("PROT_WRITE", 0x2), ("PROT_EXEC", 0x4)];
const MMAP_FLAGS: &[(&str, u64)] = &[
    ("MAP_SHARED", 0x1),
    ("MAP_PRIVATE", 0x2),
    ("MAP_DROPPABLE", 0x08),
    ("MAP_ANON", 0x20),
    ("MAP_GROWSDOWN", 0x0100),
];
const MMAP_STATUS: &[(&str, u64)] = &[
    ("VMA_AREA_NONE", 0),
    ("VMA_AREA_REGULAR", 1 << 0),
    ("VMA_AREA_STACK", 1 << 1),
    ("VMA_AREA_VSYSCALL", 1 << 2),
    ("VMA_AREA_VDSO", 1 << 3),
    ("VMA_AREA_HEAP", 1 << 5),
    ("VMA_FILE_PRIVATE", 1 << 6),
    ("VMA_FILE_SHARED", 1 << 7),
    ("VMA_ANON_SHARED", 1 << 8),
    ("VMA_ANON_PRIVATE", 1 << 9),
    ("VMA_AREA_SYSVIPC", 1 << 10),
    ("VMA_AREA_SOCKET", 1 << 11),
    ("VMA_AREA_VVAR", 1 << 12),
    ("VMA_AREA_AIORING", 1 << 13),
    ("VMA_AREA_MEMFD", 1 << 14),
    ("VMA_AREA_SHSTK", 1 << 15),
    ("VMA_AREA_UPROBES", 1 << 17),
    ("VMA_UNSUPP", 1 << 31),
];
const RFILE_FLAGS: &[(&str, u64)] = &[
    ("O_WRONLY", 0o1),
    ("O_RDWR", 0o2),
    ("O_CREAT", 0o100),
    ("O_EXCL", 0o200),
    ("O_NOCTTY", 0o400),
    ("O_TRUNC", 0o1000),
    ("O_APPEND", 0o2000),
    ("O_NONBLOCK", 0o4000),
    ("O_DSYNC", 0o10000),
    ("FASYNC", 0o20000),
    ("O_DIRECT", 0o40000),
    ("O_LARGEFILE", 0o100000),
    ("O_DIRECTORY", 0o200000),
    ("O_NOFOLLOW", 0o400000),
    ("O_NOATIME", 0o1000000),
    ("O_CLOEXEC", 0o2000000),
];
const SEALS_FLAGS: &[(&str, u64)] = &[
    ("F_SEAL_SEAL", 0x1),
    ("F_SEAL_SHRINK", 0x2),
    ("F_SEAL_GROW", 0x4),
    ("F_SEAL_WRITE", 0x8),
    ("F_SEAL_FUTURE_WRITE", 0x10),
];
const PMAP_FLAGS: &[(&str, u64)] = &[("PE_PARENT", 1), ("PE_LAZY", 2), ("PE_PRESENT", 4)];

fn flags_table(name: &str) -> Option<&'static [(&'static str, u64)]> {
    Some(match name {
        "mmap.prot" => MMAP_PROT,
        "mmap.flags" => MMAP_FLAGS,
        "mmap.status" => MMAP_STATUS,
        "rfile.flags" => RFILE_FLAGS,
        "pmap.flags" => PMAP_FLAGS,
        "seals.flags" => SEALS_FLAGS,
        _ => return None,
    })
}

fn dict_table(dict: &str, field: &str) -> Option<&'static [(i64, &'static str)]> {
    Some(match (dict, field) {
        ("gen", "task_state") => &[(1, "Alive"), (3, "Zombie"), (6, "Stopped")],
        ("sk", "family") => &[
            (1, "UNIX"),
            (2, "INET"),
            (10, "INET6"),
            (16, "NETLINK"),
            (17, "PACKET"),
        ],
        ("sk", "type") => &[
            (1, "STREAM"),
            (2, "DGRAM"),
            (3, "RAW"),
            (5, "SEQPACKET"),
            (10, "PACKET"),
        ],
        ("sk", "state") => &[
            (1, "ESTABLISHED"),
            (2, "SYN_SENT"),
            (3, "SYN_RECV"),
            (4, "FIN_WAIT1"),
            (5, "FIN_WAIT2"),
            (6, "TIME_WAIT"),
            (7, "CLOSE"),
            (8, "CLOSE_WAIT"),
            (9, "LAST_ACK"),
            (10, "LISTEN"),
        ],
        ("sk", "proto") => &[(0, "IP"), (6, "TCP"), (17, "UDP"), (136, "UDPLITE")],
        _ => return None,
    })
}

fn map_flags(mut v: u64, table: &[(&str, u64)]) -> String {
    let mut parts: Vec<String> = table
        .iter()
        .filter(|(_, b)| v & b != 0)
        .map(|(n, _)| (*n).to_string())
        .collect();
    for (_, b) in table {
        v &= !b;
    }
    if v != 0 {
        parts.push(format!("{v:#x}"));
    }
    parts.join(" | ")
}

// ---- text helpers that mirror Python's behaviour ----

/// Base64 with a newline after every 76 characters and at the end (empty
/// input gives an empty string), as Python's `base64.encodebytes`.
pub fn b64_lines(data: &[u8]) -> String {
    let s = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = String::with_capacity(s.len() + s.len() / 76 + 1);
    for chunk in s.as_bytes().chunks(76) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out
}

/// Decodes base64 that may hold line breaks.
pub fn b64_decode(s: &str) -> std::result::Result<Vec<u8>, String> {
    let clean: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map_err(|e| format!("bad base64: {e}"))
}

/// Quoted-printable, as Python's `binascii.b2a_qp` for unix socket names.
fn qp_encode(data: &[u8]) -> String {
    let mut out = String::new();
    let mut line = 0usize;
    for (i, &c) in data.iter().enumerate() {
        if c == b'\n' {
            out.push('\n');
            line = 0;
            continue;
        }
        let at_eol = data.get(i + 1).is_none_or(|&n| n == b'\n');
        let quote = c == b'='
            || !(b' '..=b'~').contains(&c) && c != b'\t'
            || (c == b' ' || c == b'\t') && at_eol;
        let piece = if quote {
            format!("={c:02X}")
        } else {
            (c as char).to_string()
        };
        if line + piece.len() > 75 && !(at_eol && line + piece.len() <= 76) {
            out.push_str("=\n");
            line = 0;
        }
        line += piece.len();
        out.push_str(&piece);
    }
    out
}

fn qp_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            if b.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            if let Some(h) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
            {
                if let Ok(v) = u8::from_str_radix(h, 16) {
                    out.push(v);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn ipv6_compressed(a: std::net::Ipv6Addr) -> String {
    let g = a.segments();
    let (mut best, mut best_len, mut cur, mut cur_len) = (0usize, 0usize, 0usize, 0usize);
    for (i, &x) in g.iter().enumerate() {
        if x == 0 {
            if cur_len == 0 {
                cur = i;
            }
            cur_len += 1;
            if cur_len > best_len {
                best = cur;
                best_len = cur_len;
            }
        } else {
            cur_len = 0;
        }
    }
    let hex = |s: &[u16]| {
        s.iter()
            .map(|x| format!("{x:x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    if best_len > 1 {
        format!("{}::{}", hex(&g[..best]), hex(&g[best + best_len..]))
    } else {
        hex(&g)
    }
}

/// Python's `int(s, 0)`.
fn parse_int(s: &str) -> Option<i128> {
    let t = s.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let t = t.replace('_', "");
    let lower = t.to_ascii_lowercase();
    let v = if let Some(h) = lower.strip_prefix("0x") {
        i128::from_str_radix(h, 16).ok()?
    } else if let Some(o) = lower.strip_prefix("0o") {
        i128::from_str_radix(o, 8).ok()?
    } else if let Some(b) = lower.strip_prefix("0b") {
        i128::from_str_radix(b, 2).ok()?
    } else {
        lower.parse::<i128>().ok()?
    };
    Some(if neg { -v } else { v })
}

// ---- message → JSON ----

fn int_of(v: &Value) -> Option<i128> {
    Some(match v {
        Value::I32(x) => i128::from(*x),
        Value::I64(x) => i128::from(*x),
        Value::U32(x) => i128::from(*x),
        Value::U64(x) => i128::from(*x),
        _ => return None,
    })
}

fn json_int(v: i128) -> Json {
    if let Ok(u) = u64::try_from(v) {
        json!(u)
    } else {
        json!(v as i64)
    }
}

fn scalar_to_json(
    field: &FieldDescriptor,
    o: &CriuOpts,
    v: &Value,
    pretty: bool,
    hex: bool,
) -> Json {
    match v {
        Value::Message(m) => message_to_json(m, pretty, hex),
        Value::Bytes(b) => {
            if o.conv.as_deref() == Some("unix_name") {
                Json::String(qp_encode(b))
            } else {
                Json::String(b64_lines(b))
            }
        }
        Value::EnumNumber(n) => match field.kind() {
            Kind::Enum(e) => match e.get_value(*n) {
                Some(ev) => Json::String(ev.name().to_string()),
                None => json!(n),
            },
            _ => json!(n),
        },
        Value::Bool(b) => Json::Bool(*b),
        Value::String(s) => Json::String(s.clone()),
        Value::F32(f) => json!(f),
        Value::F64(f) => json!(f),
        other => {
            let Some(n) = int_of(other) else {
                return Json::Null;
            };
            if !pretty {
                return json_int(n);
            }
            if hex {
                return Json::String(if n < 0 {
                    format!("-{:#x}", -n)
                } else {
                    format!("{n:#x}")
                });
            }
            let u = n as u64;
            if o.dev {
                let (maj, min) = if o.odev {
                    (
                        ((u >> 8) & 0xfff) | ((u >> 32) & !0xfff),
                        (u & 0xff) | ((u >> 12) & !0xff),
                    )
                } else {
                    (u >> 20, u & ((1 << 20) - 1))
                };
                return Json::String(format!("{maj}:{min}"));
            }
            if let Some(f) = &o.flags {
                return Json::String(match flags_table(f) {
                    Some(t) => map_flags(u, t),
                    None => format!("{n:#x}"),
                });
            }
            if let Some(d) = &o.dict {
                if let Some(t) = dict_table(d, field.name()) {
                    if let Some((_, name)) = t.iter().find(|(k, _)| i128::from(*k) == n) {
                        return Json::String((*name).to_string());
                    }
                }
            }
            json_int(n)
        }
    }
}

fn ip_to_string(words: &[Value]) -> String {
    let w: Vec<u32> = words
        .iter()
        .map(|v| match v {
            Value::U32(x) => u32::from_be(*x),
            _ => 0,
        })
        .collect();
    if w.len() == 1 {
        std::net::Ipv4Addr::from(w[0]).to_string()
    } else {
        let mut v: u128 = 0;
        for x in w.iter().take(4) {
            v = (v << 32) | u128::from(*x);
        }
        ipv6_compressed(std::net::Ipv6Addr::from(v))
    }
}

fn sorted_fields(desc: &MessageDescriptor) -> Vec<FieldDescriptor> {
    let mut f: Vec<FieldDescriptor> = desc.fields().collect();
    f.sort_by_key(|f| f.number());
    f
}

/// Renders one message as upstream crit's `pb2dict` does.
pub fn message_to_json(m: &DynamicMessage, pretty: bool, hex: bool) -> Json {
    let mut out = Map::new();
    for field in sorted_fields(&m.descriptor()) {
        if !m.has_field(&field) {
            continue;
        }
        let o = criu_opts(&field);
        let h = hex || o.hex;
        let v = m.get_field(&field);
        let j = match &*v {
            Value::List(items) => {
                if items.is_empty() {
                    continue;
                }
                if pretty && o.ipadd {
                    Json::Array(vec![Json::String(ip_to_string(items))])
                } else {
                    Json::Array(
                        items
                            .iter()
                            .map(|x| scalar_to_json(&field, &o, x, pretty, h))
                            .collect(),
                    )
                }
            }
            other => scalar_to_json(&field, &o, other, pretty, h),
        };
        out.insert(field.name().to_string(), j);
    }
    Json::Object(out)
}

// ---- JSON → message ----

fn jerr(what: String) -> String {
    what
}

fn json_to_scalar(
    field: &FieldDescriptor,
    o: &CriuOpts,
    j: &Json,
) -> std::result::Result<Value, String> {
    let name = field.name();
    let kind = field.kind();
    if let Kind::Message(md) = &kind {
        return Ok(Value::Message(json_to_message(md, j)?));
    }
    if let Kind::Bytes = kind {
        let s = j
            .as_str()
            .ok_or_else(|| jerr(format!("{name}: bytes must be a string")))?;
        let b = if o.conv.as_deref() == Some("unix_name") {
            qp_decode(s)
        } else {
            b64_decode(s)?
        };
        return Ok(Value::Bytes(b.into()));
    }
    if let Kind::Enum(e) = &kind {
        return match j {
            Json::String(s) => e
                .get_value_by_name(s)
                .map(|v| Value::EnumNumber(v.number()))
                .ok_or_else(|| format!("{name}: no value {s} in enum {}", e.name())),
            Json::Number(n) => n
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .map(Value::EnumNumber)
                .ok_or_else(|| format!("{name}: bad enum number {n}")),
            _ => Err(format!("{name}: bad enum value {j}")),
        };
    }
    if let Kind::Bool = kind {
        return j
            .as_bool()
            .map(Value::Bool)
            .ok_or_else(|| format!("{name}: not a bool: {j}"));
    }
    if let Kind::String = kind {
        return j
            .as_str()
            .map(|s| Value::String(s.to_string()))
            .ok_or_else(|| format!("{name}: not a string: {j}"));
    }
    if let Kind::Double | Kind::Float = kind {
        let f = j
            .as_f64()
            .ok_or_else(|| format!("{name}: not a number: {j}"))?;
        return Ok(if kind == Kind::Float {
            Value::F32(f as f32)
        } else {
            Value::F64(f)
        });
    }
    let n: i128 = match j {
        Json::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .ok_or_else(|| format!("{name}: not an integer: {n}"))?,
        Json::String(s) => {
            if o.dev {
                let (a, b) = s
                    .split_once(':')
                    .ok_or_else(|| format!("{name}: bad dev {s}"))?;
                let (a, b): (u64, u64) = (
                    a.trim()
                        .parse()
                        .map_err(|_| format!("{name}: bad dev {s}"))?,
                    b.trim()
                        .parse()
                        .map_err(|_| format!("{name}: bad dev {s}"))?,
                );
                i128::from(if o.odev {
                    ((a & 0xfff) << 8) | ((a & !0xfff) << 32) | (b & 0xff) | ((b & !0xff) << 12)
                } else {
                    (a << 20) | b
                })
            } else if let Some(t) = o.flags.as_deref().and_then(flags_table) {
                let mut v: i128 = 0;
                if !s.is_empty() {
                    for part in s.split('|').map(str::trim) {
                        v += match t.iter().find(|(n, _)| *n == part) {
                            Some((_, b)) => i128::from(*b),
                            None => {
                                parse_int(part).ok_or_else(|| format!("{name}: bad flag {part}"))?
                            }
                        };
                    }
                }
                v
            } else if let Some(t) = o.dict.as_deref().and_then(|d| dict_table(d, name)) {
                match t.iter().find(|(_, n)| n == s) {
                    Some((k, _)) => i128::from(*k),
                    None => parse_int(s).ok_or_else(|| format!("{name}: bad value {s}"))?,
                }
            } else {
                parse_int(s).ok_or_else(|| format!("{name}: bad integer {s}"))?
            }
        }
        _ => return Err(format!("{name}: not an integer: {j}")),
    };
    let bad = || format!("{name}: {n} out of range");
    Ok(match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(i32::try_from(n).map_err(|_| bad())?)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::I64(i64::try_from(n).map_err(|_| bad())?)
        }
        Kind::Uint32 | Kind::Fixed32 => Value::U32(u32::try_from(n).map_err(|_| bad())?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(u64::try_from(n).map_err(|_| bad())?),
        _ => return Err(format!("{name}: unsupported type")),
    })
}

fn ip_from_string(s: &str) -> std::result::Result<Vec<Value>, String> {
    let a: std::net::IpAddr = s.parse().map_err(|_| format!("bad address {s}"))?;
    Ok(match a {
        std::net::IpAddr::V4(v) => vec![Value::U32(u32::from(v).to_be())],
        std::net::IpAddr::V6(v) => {
            let x = u128::from(v);
            (0..4)
                .rev()
                .map(|i| Value::U32(((x >> (32 * i)) as u32).to_be()))
                .collect()
        }
    })
}

/// Builds a message from crit's JSON (the inverse of [`message_to_json`]).
pub fn json_to_message(
    desc: &MessageDescriptor,
    j: &Json,
) -> std::result::Result<DynamicMessage, String> {
    let obj = j
        .as_object()
        .ok_or_else(|| format!("{}: not an object", desc.name()))?;
    let mut m = DynamicMessage::new(desc.clone());
    for field in desc.fields() {
        let Some(v) = obj.get(field.name()) else {
            continue;
        };
        let o = criu_opts(&field);
        if field.cardinality() == Cardinality::Repeated {
            let arr = v
                .as_array()
                .ok_or_else(|| format!("{}: not a list", field.name()))?;
            let items = match arr.first() {
                Some(Json::String(s)) if o.ipadd => ip_from_string(s)?,
                _ => arr
                    .iter()
                    .map(|x| json_to_scalar(&field, &o, x))
                    .collect::<std::result::Result<_, _>>()?,
            };
            m.set_field(&field, Value::List(items));
        } else {
            m.set_field(&field, json_to_scalar(&field, &o, v)?);
        }
    }
    Ok(m)
}

// ---- whole images ----

/// How raw payload follows the entries of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extra {
    None,
    /// base64 of the length in this field
    Field(&'static str),
    /// base64 of the sum of these fields
    Sum(&'static str, &'static str),
    /// `{"inq", "outq"}`
    Tcp,
    /// shm contents, `size` bytes padded to 4
    Shm,
    /// `nsems` u16 values padded to 8
    Sem,
    /// `qnum` framed ipc_msg + data padded to 8
    Msg,
}

fn extra_of(mg: u32) -> Extra {
    match mg {
        magic::PIPES_DATA | magic::FIFO_DATA => Extra::Field("bytes"),
        magic::SK_QUEUES => Extra::Field("length"),
        magic::TCP_STREAM => Extra::Tcp,
        magic::BPFMAP_DATA => Extra::Sum("keys_bytes", "values_bytes"),
        magic::IPCNS_SHM => Extra::Shm,
        magic::IPCNS_SEM => Extra::Sem,
        magic::IPCNS_MSG => Extra::Msg,
        _ => Extra::None,
    }
}

fn uint_field(m: &DynamicMessage, name: &str) -> u64 {
    m.descriptor()
        .get_field_by_name(name)
        .and_then(|f| int_of(&m.get_field(&f)))
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0)
}

fn round_up(x: u64, to: u64) -> u64 {
    x.div_ceil(to).saturating_mul(to)
}

fn message(name: &str) -> std::result::Result<MessageDescriptor, String> {
    pool()?
        .get_message_by_name(name)
        .ok_or_else(|| format!("no message {name}"))
}

fn jsonerr(file: &Path) -> impl Fn(String) -> Error + '_ {
    move |what| Error::Json {
        file: file.to_owned(),
        what,
    }
}

/// A payload size as upstream crit's `--nopl` shows it: `5B`, `1.5KB`,
/// `2MB`.
pub fn human_size(n: u64) -> String {
    let mut num = n as f64;
    for unit in ["", "K", "M", "G", "T", "P", "E", "Z"] {
        if num < 1024.0 {
            return if num.fract() == 0.0 {
                format!("{num:.0}{unit}B")
            } else {
                format!("{num:.1}{unit}B")
            };
        }
        num /= 1024.0;
    }
    format!("{num:.1}YB")
}

/// Decodes an image (its bytes, `file` names it in errors) into crit's JSON.
pub fn decode_image(file: &Path, bytes: Vec<u8>, pretty: bool) -> Result<Json> {
    decode_image_with(file, bytes, pretty, false)
}

/// [`decode_image`]; with `no_payload` (crit's `--nopl`) the raw payload
/// after an entry is not shown: its `"extra"` is `"... <SIZE>"` (none at
/// all for ghost files), as upstream crit does.
pub fn decode_image_with(
    file: &Path,
    bytes: Vec<u8>,
    pretty: bool,
    no_payload: bool,
) -> Result<Json> {
    let je = jsonerr(file);
    let mut r = ImageReader::from_bytes(file, bytes)?;
    let mg = r.magic();
    let mname = magic::name_of(mg).ok_or_else(|| je(format!("unknown magic {mg:#x}")))?;
    let msg_name =
        magic::message_of(mg).ok_or_else(|| je(format!("no message for {mname} images")))?;
    let desc = message(msg_name).map_err(&je)?;
    let decode = |r: &ImageReader, at: u64, d: &MessageDescriptor, body: &[u8]| {
        DynamicMessage::decode(d.clone(), body).map_err(|e| Error::Format {
            file: r.path().to_owned(),
            offset: at,
            what: format!("cannot decode {}: {e}", d.name()),
        })
    };
    let mut entries = Vec::new();
    if mg == magic::GHOST_FILE {
        let chunk = message("criu.ghost_chunk_entry").map_err(&je)?;
        let Some((at, body)) = r.next_raw()? else {
            return Err(je("empty ghost file image".into()));
        };
        let gf = decode(&r, at, &desc, &body)?;
        let mut head = message_to_json(&gf, pretty, false);
        let chunks = gf
            .descriptor()
            .get_field_by_name("chunks")
            .is_some_and(|f| matches!(&*gf.get_field(&f), Value::Bool(true)));
        if chunks {
            entries.push(head);
            while let Some((at, body)) = r.next_raw()? {
                let c = decode(&r, at, &chunk, &body)?;
                let mut j = message_to_json(&c, pretty, false);
                let data = r.read_raw(uint_field(&c, "len"))?;
                if !no_payload {
                    j["extra"] = Json::String(b64_lines(&data));
                }
                entries.push(j);
            }
        } else {
            let data = r.read_rest()?;
            if !no_payload {
                head["extra"] = Json::String(b64_lines(&data));
            }
            entries.push(head);
        }
        return Ok(json!({"magic": mname, "entries": entries}));
    }
    let head = message("criu.pagemap_head").map_err(&je)?;
    let ipc_msg = message("criu.ipc_msg").map_err(&je)?;
    while let Some((at, body)) = r.next_raw()? {
        let d = if mg == magic::PAGEMAP && entries.is_empty() {
            &head
        } else {
            &desc
        };
        let m = decode(&r, at, d, &body)?;
        let mut j = message_to_json(&m, pretty, false);
        // The payload's size as upstream's --nopl counts it.
        let mut pl_size = 0u64;
        let extra = match extra_of(mg) {
            Extra::None => None,
            Extra::Field(f) => {
                pl_size = uint_field(&m, f);
                Some(Json::String(b64_lines(&r.read_raw(pl_size)?)))
            }
            Extra::Sum(a, b) => {
                pl_size = uint_field(&m, a).saturating_add(uint_field(&m, b));
                Some(Json::String(b64_lines(&r.read_raw(pl_size)?)))
            }
            Extra::Tcp => {
                let inq = r.read_raw(uint_field(&m, "inq_len"))?;
                let outq = r.read_raw(uint_field(&m, "outq_len"))?;
                pl_size = (inq.len() + outq.len()) as u64;
                Some(json!({"inq": b64_lines(&inq), "outq": b64_lines(&outq)}))
            }
            Extra::Shm => {
                let size = uint_field(&m, "size");
                let data = r.read_raw(size)?;
                r.read_raw(round_up(size, 4) - size)?;
                pl_size = size;
                Some(Json::String(b64_lines(&data)))
            }
            Extra::Sem => {
                let size = uint_field(&m, "nsems").saturating_mul(2);
                let data = r.read_raw(size)?;
                r.read_raw(round_up(size, 8) - size)?;
                pl_size = size;
                Some(Json::Array(
                    data.chunks(2)
                        .map(|c| json!(u16::from_le_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
                        .collect(),
                ))
            }
            Extra::Msg => {
                let mut v = Vec::new();
                for _ in 0..uint_field(&m, "qnum") {
                    let Some((at, body)) = r.next_raw()? else {
                        break;
                    };
                    let im = decode(&r, at, &ipc_msg, &body)?;
                    let size = uint_field(&im, "msize");
                    pl_size += body.len() as u64 + size;
                    let data = r.read_raw(size)?;
                    r.read_raw(round_up(size, 8) - size)?;
                    v.push(message_to_json(&im, false, false));
                    v.push(Json::String(b64_lines(&data)));
                }
                Some(Json::Array(v))
            }
        };
        let extra = match extra {
            Some(_) if no_payload => Some(Json::String(format!("... <{}>", human_size(pl_size)))),
            x => x,
        };
        if let (Some(x), Some(o)) = (extra, j.as_object_mut()) {
            o.insert("extra".into(), x);
        }
        entries.push(j);
    }
    Ok(json!({"magic": mname, "entries": entries}))
}

fn encode_entry(out: &mut Vec<u8>, m: &DynamicMessage) {
    let body = m.encode_to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
}

fn extra_bytes(x: &Json) -> std::result::Result<Vec<u8>, String> {
    b64_decode(x.as_str().ok_or("extra must be a base64 string")?)
}

fn truthy(x: &Json) -> bool {
    match x {
        Json::Null => false,
        Json::Bool(b) => *b,
        Json::String(s) => !s.is_empty(),
        Json::Array(a) => !a.is_empty(),
        Json::Object(o) => !o.is_empty(),
        Json::Number(n) => n.as_f64() != Some(0.0),
    }
}

/// Encodes crit's JSON of an image back into image bytes.
pub fn encode_image(file: &Path, img: &Json) -> Result<Vec<u8>> {
    let je = jsonerr(file);
    encode_inner(img).map_err(je)
}

fn encode_inner(img: &Json) -> std::result::Result<Vec<u8>, String> {
    let mname = img["magic"].as_str().ok_or("no \"magic\" name")?;
    let mg = magic::by_name(mname).ok_or_else(|| format!("unknown magic {mname}"))?;
    let desc =
        message(magic::message_of(mg).ok_or_else(|| format!("no message for {mname} images"))?)?;
    let entries = img["entries"].as_array().ok_or("no \"entries\" list")?;
    let mut out = Vec::new();
    if let Some(first) = magic::first_magic(mg) {
        out.extend_from_slice(&first.to_le_bytes());
    }
    out.extend_from_slice(&mg.to_le_bytes());
    if mg == magic::GHOST_FILE {
        let chunk = message("criu.ghost_chunk_entry")?;
        let Some(first) = entries.first() else {
            return Err("no ghost_file_entry".into());
        };
        let gf = json_to_message(&desc, first)?;
        encode_entry(&mut out, &gf);
        if first.get("chunks").and_then(Json::as_bool) == Some(true) {
            for e in &entries[1..] {
                encode_entry(&mut out, &json_to_message(&chunk, e)?);
                out.extend_from_slice(&extra_bytes(&e["extra"])?);
            }
        } else {
            out.extend_from_slice(&extra_bytes(&first["extra"])?);
        }
        return Ok(out);
    }
    let head = message("criu.pagemap_head")?;
    let ipc_msg = message("criu.ipc_msg")?;
    for (i, e) in entries.iter().enumerate() {
        let d = if mg == magic::PAGEMAP && i == 0 {
            &head
        } else {
            &desc
        };
        let m = json_to_message(d, e)?;
        encode_entry(&mut out, &m);
        let Some(x) = e.get("extra").filter(|x| truthy(x)) else {
            continue;
        };
        match extra_of(mg) {
            Extra::None => {}
            Extra::Field(_) | Extra::Sum(..) => out.extend_from_slice(&extra_bytes(x)?),
            Extra::Tcp => {
                out.extend_from_slice(&extra_bytes(&x["inq"])?);
                out.extend_from_slice(&extra_bytes(&x["outq"])?);
            }
            Extra::Shm => {
                let size = uint_field(&m, "size") as usize;
                let mut data = extra_bytes(x)?;
                data.resize(size, 0);
                data.resize(round_up(size as u64, 4) as usize, 0);
                out.extend_from_slice(&data);
            }
            Extra::Sem => {
                let vals = x.as_array().ok_or("sem extra must be a list")?;
                if vals.len() as u64 != uint_field(&m, "nsems") {
                    return Err("number of semaphores mismatch".into());
                }
                let mut data = Vec::new();
                for v in vals {
                    let n = v
                        .as_u64()
                        .and_then(|n| u16::try_from(n).ok())
                        .ok_or("bad semaphore value")?;
                    data.extend_from_slice(&n.to_le_bytes());
                }
                data.resize(round_up(data.len() as u64, 8) as usize, 0);
                out.extend_from_slice(&data);
            }
            Extra::Msg => {
                let v = x.as_array().ok_or("msg extra must be a list")?;
                for pair in v.chunks(2) {
                    let im = json_to_message(&ipc_msg, &pair[0])?;
                    encode_entry(&mut out, &im);
                    let size = uint_field(&im, "msize") as usize;
                    let mut data = extra_bytes(pair.get(1).ok_or("msg without data")?)?;
                    data.resize(size, 0);
                    data.resize(round_up(size as u64, 8) as usize, 0);
                    out.extend_from_slice(&data);
                }
            }
        }
    }
    Ok(out)
}

/// `crit info`: the magic name and the number of entries.
pub fn info(file: &Path, bytes: Vec<u8>) -> Result<Json> {
    let bytes_again = bytes.clone();
    let mut r = ImageReader::from_bytes(file, bytes)?;
    let mg = r.magic();
    let name = magic::name_of(mg).ok_or_else(|| jsonerr(file)(format!("unknown magic {mg:#x}")))?;
    let mut count: u64 = 0;
    if matches!(extra_of(mg), Extra::None) && mg != magic::GHOST_FILE {
        while r.next_raw()?.is_some() {
            count += 1;
        }
    } else {
        count = decode_image(file, bytes_again, false)?["entries"]
            .as_array()
            .map_or(0, |a| a.len() as u64);
    }
    if mg == magic::PAGEMAP {
        count = count.saturating_sub(1);
    }
    Ok(json!({"magic": name, "count": count}))
}

/// Prints JSON as Python's `json.dump(…, indent=4)` (pretty) or
/// `json.dump(…)` does: non-ASCII escaped as `\uXXXX`.
pub fn to_python_json(v: &Json, pretty: bool) -> String {
    let s = if pretty {
        let mut buf = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
        match serde::Serialize::serialize(v, &mut ser) {
            Ok(()) => String::from_utf8_lossy(&buf).into_owned(),
            Err(_) => v.to_string(),
        }
    } else {
        python_compact(v)
    };
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut b = [0u16; 2];
            for u in c.encode_utf16(&mut b) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// Python's compact separators are `", "` and `": "`.
fn python_compact(v: &Json) -> String {
    match v {
        Json::Array(a) => format!(
            "[{}]",
            a.iter().map(python_compact).collect::<Vec<_>>().join(", ")
        ),
        Json::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", Json::String(k.clone()), python_compact(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_lines_like_python() {
        assert_eq!(b64_lines(b""), "");
        assert_eq!(b64_lines(b"abc"), "YWJj\n");
        let long = b64_lines(&[0u8; 60]);
        assert_eq!(long.lines().map(str::len).collect::<Vec<_>>(), vec![76, 4]);
        assert_eq!(b64_decode(&long).unwrap(), vec![0u8; 60]);
    }

    #[test]
    fn flags_and_ints() {
        assert_eq!(
            map_flags(0x7, MMAP_PROT),
            "PROT_READ | PROT_WRITE | PROT_EXEC"
        );
        assert_eq!(map_flags(0x0, MMAP_PROT), "");
        assert_eq!(map_flags(0x11, MMAP_PROT), "PROT_READ | 0x10");
        assert_eq!(parse_int("0x10"), Some(16));
        assert_eq!(parse_int("-0x10"), Some(-16));
        assert_eq!(parse_int("17"), Some(17));
    }

    #[test]
    fn addresses_like_python() {
        let v6 = |s: &str| ipv6_compressed(s.parse().unwrap());
        assert_eq!(v6("::ffff:127.0.0.1"), "::ffff:7f00:1");
        assert_eq!(v6("::1"), "::1");
        assert_eq!(v6("1:0:0:2:0:0:0:3"), "1:0:0:2::3");
        assert_eq!(v6("1:0:2:3:4:5:6:7"), "1:0:2:3:4:5:6:7");
        let ip = ip_from_string("127.0.0.1").unwrap();
        assert_eq!(ip_to_string(&ip), "127.0.0.1");
    }

    #[test]
    fn quoted_printable_round_trip() {
        let name = b"\0abstract=name with space ";
        let q = qp_encode(name);
        assert_eq!(q, "=00abstract=3Dname with space=20");
        assert_eq!(qp_decode(&q), name);
    }

    #[test]
    fn python_json_text() {
        let v = json!({"a": [1, "é"], "b": {}});
        assert_eq!(
            to_python_json(&v, false),
            r#"{"a": [1, "\u00e9"], "b": {}}"#
        );
        assert_eq!(
            to_python_json(&v, true),
            "{\n    \"a\": [\n        1,\n        \"\\u00e9\"\n    ],\n    \"b\": {}\n}"
        );
    }

    #[test]
    fn sizes_like_upstream_nopl() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(5), "5B");
        assert_eq!(human_size(1023), "1023B");
        assert_eq!(human_size(2048), "2KB");
        assert_eq!(human_size(1536), "1.5KB");
        assert_eq!(human_size(3 << 20), "3MB");
    }

    #[test]
    fn no_payload_shows_sizes_instead_of_data() {
        let dir = tempfile::tempdir().unwrap();
        let mut w =
            crate::image::ImageWriter::create(dir.path(), "pipes-data.img", magic::PIPES_DATA)
                .unwrap();
        for (id, data) in [(1u32, &b"hello"[..]), (2, &[7u8; 1536][..])] {
            w.write(&crate::image::pb::PipeDataEntry {
                pipe_id: id,
                bytes: data.len() as u32,
                size: None,
            })
            .unwrap();
            w.write_raw(data).unwrap();
        }
        w.finish().unwrap();
        let path = dir.path().join("pipes-data.img");
        let bytes = std::fs::read(&path).unwrap();
        let full = decode_image_with(&path, bytes.clone(), false, false).unwrap();
        assert_eq!(full["entries"][0]["extra"], "aGVsbG8=\n");
        let nopl = decode_image_with(&path, bytes, false, true).unwrap();
        let extras: Vec<_> = nopl["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["extra"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(extras, ["... <5B>", "... <1.5KB>"]);
        assert_eq!(nopl["entries"][1]["pipe_id"], 2);
    }
}
