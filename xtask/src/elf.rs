//! Whether an x86-64 ELF executable is statically linked, read straight from
//! its program headers (xtask has no ELF crate, and these few fields are all
//! it takes).
//!
//! Static means: no program interpreter (PT_INTERP) and no shared-library
//! dependency (DT_NEEDED). A static-pie executable, Rust's default for musl,
//! still has a PT_DYNAMIC segment for its own relocations, so that segment
//! alone proves nothing.

use anyhow::{Context, Result, bail, ensure};

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;

/// What makes the executable depend on the host's libraries; empty when it
/// is static.
pub fn dynamic_dependencies(elf: &[u8]) -> Result<Vec<String>> {
    ensure!(elf.starts_with(b"\x7fELF"), "not an ELF file");
    // EI_CLASS 2 = 64-bit, EI_DATA 1 = little-endian.
    ensure!(
        elf.get(4) == Some(&2) && elf.get(5) == Some(&1),
        "not a 64-bit little-endian ELF file"
    );
    let phoff = usize::try_from(u64_at(elf, 0x20)?)?;
    let phentsize = usize::from(u16_at(elf, 0x36)?);
    let phnum = usize::from(u16_at(elf, 0x38)?);
    let mut found = Vec::new();
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let kind = u32_at(elf, ph)?;
        let offset = usize::try_from(u64_at(elf, ph + 8)?)?;
        let size = usize::try_from(u64_at(elf, ph + 0x20)?)?;
        let contents = elf
            .get(offset..offset.saturating_add(size))
            .context("a segment lies outside the file")?;
        match kind {
            PT_INTERP => {
                let interp = contents.split(|&b| b == 0).next().unwrap_or_default();
                found.push(format!(
                    "program interpreter {}",
                    String::from_utf8_lossy(interp)
                ));
            }
            PT_DYNAMIC => {
                let needed = needed_count(contents)?;
                if needed > 0 {
                    found.push(format!("{needed} shared-library dependencies (DT_NEEDED)"));
                }
            }
            _ => {}
        }
    }
    Ok(found)
}

/// DT_NEEDED entries in a dynamic section (16-byte tag/value pairs).
fn needed_count(dynamic: &[u8]) -> Result<usize> {
    let mut needed = 0;
    for entry in dynamic.chunks_exact(16) {
        match u64_at(entry, 0)? {
            DT_NULL => break,
            DT_NEEDED => needed += 1,
            _ => {}
        }
    }
    Ok(needed)
}

fn u16_at(data: &[u8], at: usize) -> Result<u16> {
    Ok(u16::from_le_bytes(field(data, at)?))
}

fn u32_at(data: &[u8], at: usize) -> Result<u32> {
    Ok(u32::from_le_bytes(field(data, at)?))
}

fn u64_at(data: &[u8], at: usize) -> Result<u64> {
    Ok(u64::from_le_bytes(field(data, at)?))
}

fn field<const N: usize>(data: &[u8], at: usize) -> Result<[u8; N]> {
    match data.get(at..at.saturating_add(N)) {
        Some(bytes) => Ok(bytes.try_into().expect("slice of length N")),
        None => bail!("ELF file truncated at offset {at:#x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64-byte ELF64 header with the given program-header table.
    fn header(phoff: u64, phnum: u16) -> Vec<u8> {
        let mut elf = vec![0; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&phnum.to_le_bytes());
        elf
    }

    fn program_header(kind: u32, offset: u64, size: u64) -> Vec<u8> {
        let mut ph = vec![0; 56];
        ph[..4].copy_from_slice(&kind.to_le_bytes());
        ph[8..16].copy_from_slice(&offset.to_le_bytes());
        ph[0x20..0x28].copy_from_slice(&size.to_le_bytes());
        ph
    }

    #[test]
    fn static_pie_with_a_dynamic_section_but_no_needed_is_static() {
        let mut elf = header(64, 1);
        elf.extend(program_header(PT_DYNAMIC, 120, 32));
        // DT_RELA (7) then DT_NULL.
        elf.extend(7u64.to_le_bytes());
        elf.extend(0u64.to_le_bytes());
        elf.extend([0; 16]);
        assert_eq!(dynamic_dependencies(&elf).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn interpreter_and_needed_are_reported() {
        let mut elf = header(64, 2);
        elf.extend(program_header(PT_INTERP, 176, 4));
        elf.extend(program_header(PT_DYNAMIC, 180, 48));
        elf.extend(b"/ld\0");
        for (tag, value) in [(DT_NEEDED, 1u64), (DT_NEEDED, 9), (DT_NULL, 0)] {
            elf.extend(tag.to_le_bytes());
            elf.extend(value.to_le_bytes());
        }
        assert_eq!(
            dynamic_dependencies(&elf).unwrap(),
            [
                "program interpreter /ld",
                "2 shared-library dependencies (DT_NEEDED)"
            ]
        );
    }

    #[test]
    fn this_test_binary_is_dynamic() {
        // Built for the host's glibc target, so it has an interpreter.
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let found = dynamic_dependencies(&exe).unwrap();
        assert!(found.iter().any(|f| f.starts_with("program interpreter")));
    }

    #[test]
    fn truncated_or_foreign_files_are_errors() {
        assert!(dynamic_dependencies(b"#!/bin/sh\n").is_err());
        assert!(dynamic_dependencies(&header(4096, 1)).is_err());
    }
}
