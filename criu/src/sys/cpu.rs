//! What the CPU says of itself: the XSAVE layout used by NT_X86_XSTATE.

/// One XSAVE state component in the standard (non-compacted) layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XsaveComponent {
    pub offset: u32,
    pub size: u32,
}

fn cpuid(leaf: u32, sub: u32) -> (u32, u32, u32, u32) {
    // SAFETY: CPUID exists on every x86_64 CPU; it reads, never writes.
    #[allow(unused_unsafe)]
    let r = unsafe { std::arch::x86_64::__cpuid_count(leaf, sub) };
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// The XSAVE features the OS enabled (XCR0 as reported by CPUID 0xD.0) and the
/// size of the whole standard-format area.
pub fn xsave_features() -> (u64, u32) {
    let (eax, ebx, _ecx, edx) = cpuid(0xd, 0);
    ((u64::from(edx) << 32) | u64::from(eax), ebx)
}

/// Offset and size of XSAVE component `n` (2..63) in the standard format.
pub fn xsave_component(n: u32) -> XsaveComponent {
    let (eax, ebx, _, _) = cpuid(0xd, n);
    XsaveComponent {
        offset: ebx,
        size: eax,
    }
}
