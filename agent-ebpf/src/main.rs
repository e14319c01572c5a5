//! spanlet's kernel programs. Built for the BPF target by `agent/build.rs`;
//! on the host this file is an empty binary so `cargo` commands over the
//! workspace still work.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// The BPF target has no atomic read-modify-write types (no CAS), but LLVM
// lowers an atomic add whose result is unused to BPF's `lock xadd`.
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

#[cfg(target_arch = "bpf")]
mod programs;

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier proves no program reaches a panic; this is never called.
    loop {}
}

/// GPL-compatible: bpf_task_pt_regs and bpf_probe_read_* are GPL-only helpers.
#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
