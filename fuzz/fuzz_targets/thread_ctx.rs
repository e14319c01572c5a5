//! Any bytes as an executable whose OTEP 4947 thread-context slot spanlet
//! looks for, and as an event from the kernel ring (which carries the
//! thread context read there): an answer or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = spanlet::kernel::thread_ctx::find_in_elf(data);
    let _ = spanlet::kernel::decode::decode(data);
});
