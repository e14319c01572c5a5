//! The eBPF object, built by `build.rs` and embedded once. The binary and the
//! tests share this copy; nothing reads a path under `target/` at run time.

/// The object's bytes, 8-byte aligned as the ELF parser wants.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/spanlet-ebpf"));

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use object::{Object as _, ObjectSection as _, ObjectSymbol as _, SymbolKind};

    /// The program names user space looks up are exactly the object's
    /// programs: the kernel side names them after its functions, which no
    /// shared constant can reach.
    #[test]
    fn the_shared_program_names_are_the_objects_programs() {
        let elf = object::File::parse(super::EBPF_OBJECT).expect("an ELF object");
        let programs: BTreeSet<&str> = elf
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.is_global())
            .filter(|s| {
                // Programs sit in their own sections; shared functions in .text.
                s.section_index()
                    .and_then(|i| elf.section_by_index(i).ok())
                    .and_then(|sec| sec.name().ok())
                    .is_some_and(|name| name != ".text")
            })
            .map(|s| s.name().expect("a symbol name"))
            .collect();
        let shared: BTreeSet<&str> = agent_ebpf::programs::ALL.into_iter().collect();
        assert_eq!(programs, shared);
    }
}
