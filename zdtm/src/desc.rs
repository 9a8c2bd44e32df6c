//! What each test declares about itself, next to its code.

use serde::Serialize;

/// Where a test can run: on the host, in fresh namespaces, in a user ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Flavor {
    #[serde(rename = "h")]
    Host,
    #[serde(rename = "ns")]
    Ns,
    #[serde(rename = "uns")]
    Uns,
}

pub const ALL_FLAVORS: &[Flavor] = &[Flavor::Host, Flavor::Ns, Flavor::Uns];
pub const NS_FLAVORS: &[Flavor] = &[Flavor::Ns, Flavor::Uns];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flag {
    /// Needs root: the runner does not drop privileges.
    Suid,
    /// Must run alone.
    Excl,
    /// Not part of `--all`.
    Noauto,
    /// The dump is expected to fail.
    Crfail,
    /// Passes only across a dump and restore: its options change what the
    /// tree sees (`--tcp-close` closes its connections, queued frames are
    /// dropped), so the check that every test passes without C/R leaves it
    /// out.
    Cronly,
}

/// A test's description. `name` is `family/name`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Desc {
    pub name: &'static str,
    pub family: &'static str,
    pub flavors: &'static [Flavor],
    pub flags: &'static [Flag],
    pub dump_opts: &'static [&'static str],
    pub restore_opts: &'static [&'static str],
    /// A kernel feature (see `zdtm-test features`) the test needs.
    pub feature: Option<&'static str>,
    /// Seconds the runner should allow for the whole test.
    pub timeout: u32,
    pub description: &'static str,
}

impl Desc {
    pub const DEFAULT: Desc = Desc {
        name: "",
        family: "",
        flavors: ALL_FLAVORS,
        flags: &[],
        dump_opts: &[],
        restore_opts: &[],
        feature: None,
        timeout: 30,
        description: "",
    };

    pub fn has_flag(&self, f: Flag) -> bool {
        self.flags.contains(&f)
    }
}
