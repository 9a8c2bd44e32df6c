//! Layer 0: thin safe wrappers of the syscalls nix lacks.
#![allow(unsafe_code)]
