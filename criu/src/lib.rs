//! criu-rs: Checkpoint/Restore In Userspace.
//!
//! The crate is layered as `DESIGN.md` describes; each layer uses only the
//! layers below it:
//!
//! | layer | module |
//! |---|---|
//! | 0 | [`sys`]: the syscalls nix lacks; every `unsafe` block lives here |
//! | 1 | [`proc`]: parsers of /proc text |
//! | 2 | [`image`]: CRIU's on-disk image format |
//! | 3 | [`remote`]: a seized task, its registers, memory and remote syscalls |
//! | 4 | [`objects`]: one module per kind of kernel object, dump and restore |
//! | 5 | [`dump`], [`restore`]: orchestration |
//! | 5 | [`scripts`]: the action points of a dump or restore and who is told of them |
//! | 6 | [`cli`]: the CRIU-compatible command line; [`rpc`]: `swrk` and `service` |
#![deny(unsafe_code)]

pub mod cli;
pub mod dump;
pub mod image;
pub mod objects;
pub mod proc;
pub mod remote;
pub mod restore;
pub mod rpc;
pub mod scripts;
pub mod sys;
