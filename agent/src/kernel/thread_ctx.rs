//! Where a process keeps its OpenTelemetry thread context (OTEP 4947): the
//! ELF TLS variable `otel_thread_ctx_v1`, a pointer to the thread's current
//! context record, found in the executable and located relative to the
//! thread pointer (`fsbase` on x86_64), which is all the kernel side needs
//! to read the record of whichever thread it is looking at.
//!
//! The executable is TLS module 1, whose block the dynamic loader (glibc and
//! musl alike) places right below the thread pointer (x86_64 uses TLS
//! variant II), so its slot's offset follows from the `PT_TLS` segment alone,
//! whatever access model the writer was compiled with: linkers relax
//! TLSDESC and general-dynamic accesses in an executable to static ones.
//!
//! A shared library's block is placed by the dynamic loader at run time. A
//! library that defines the variable also accesses it, through a TLSDESC
//! or initial-exec GOT entry that the loader fills with the offset from the
//! thread pointer once the block is in static TLS: that entry, read from
//! the process's memory, is the answer.
use std::{fs::File, path::Path};

use object::{
    Endianness, Object as _, ObjectSymbol as _, ReadCache, RelocationFlags, RelocationTarget,
    SymbolKind,
    elf::{PT_TLS, R_X86_64_TLSDESC, R_X86_64_TPOFF64},
    read::elf::{ElfFile64, ProgramHeader as _},
};

/// The TLS symbol OTEP 4947 writers export.
pub const SYMBOL: &str = "otel_thread_ctx_v1";

/// The thread-context slot of one executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsSlot {
    /// Address of the slot minus the thread pointer (negative on x86_64).
    pub tp_offset: i64,
    /// Whether the symbol came from `.dynsym`, where the OTEP requires it,
    /// rather than from the `.symtab` fallback.
    pub exported: bool,
}

/// The kernel's identity of a file (as `SPANLET_THREAD_CTX_BY_FILE` keys
/// it) from `stat`'s `st_dev` and `st_ino`: the kernel keeps devices as
/// `MKDEV(major, minor)` = `major << 20 | minor`, not in `stat`'s encoding.
pub fn file_key(st_dev: u64, st_ino: u64) -> agent_ebpf::FileKey {
    let (major, minor) = (libc::major(st_dev), libc::minor(st_dev));
    agent_ebpf::FileKey {
        ino: st_ino,
        dev: (major << 20) | minor,
        _pad: 0,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ThreadCtxError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a 64-bit ELF file: {source}")]
    Elf { path: String, source: object::Error },
    #[error("{path}: `{SYMBOL}` is not a TLS variable of the executable ({why})")]
    Malformed { path: String, why: &'static str },
}

/// Finds the slot in an executable; `None` when it does not publish thread
/// context.
pub fn find_in_file(path: &Path) -> Result<Option<TlsSlot>, ThreadCtxError> {
    let cache = open(path)?;
    let elf = parse(path, &cache)?;
    find(&elf).map_err(|why| ThreadCtxError::Malformed {
        path: path.display().to_string(),
        why,
    })
}

/// The slot in an executable already in memory, for callers (and the fuzz
/// target) that have its bytes: the same parsing as [`find_in_file`].
pub fn find_in_elf(data: &[u8]) -> Result<Option<TlsSlot>, ThreadCtxError> {
    let elf = ElfFile64::<Endianness, _>::parse(data).map_err(|source| ThreadCtxError::Elf {
        path: "(bytes)".to_owned(),
        source,
    })?;
    find(&elf).map_err(|why| ThreadCtxError::Malformed {
        path: "(bytes)".to_owned(),
        why,
    })
}

/// A file to parse lazily: only the headers and tables read are loaded.
fn open(path: &Path) -> Result<ReadCache<File>, ThreadCtxError> {
    File::open(path)
        .map(ReadCache::new)
        .map_err(|source| ThreadCtxError::Open {
            path: path.display().to_string(),
            source,
        })
}

fn parse<'a>(
    path: &Path,
    cache: &'a ReadCache<File>,
) -> Result<ElfFile64<'a, Endianness, &'a ReadCache<File>>, ThreadCtxError> {
    ElfFile64::parse(cache).map_err(|source| ThreadCtxError::Elf {
        path: path.display().to_string(),
        source,
    })
}

fn find<'data, R: object::ReadRef<'data>>(
    elf: &ElfFile64<'data, Endianness, R>,
) -> Result<Option<TlsSlot>, &'static str> {
    let Some((value, exported)) = symbol(elf) else {
        return Ok(None);
    };
    let endian = elf.endian();
    let tls = elf
        .elf_program_headers()
        .iter()
        .find(|ph| ph.p_type(endian) == PT_TLS)
        .ok_or("no PT_TLS segment")?;
    let (vaddr, memsz, align) = (
        tls.p_vaddr(endian),
        tls.p_memsz(endian),
        tls.p_align(endian).max(1),
    );
    if !align.is_power_of_two() {
        return Err("PT_TLS alignment is not a power of two");
    }
    if value.checked_add(8).is_none_or(|end| end > memsz) {
        return Err("the symbol lies outside the TLS segment");
    }
    let offset = block_offset(vaddr, memsz, align).ok_or("TLS segment too large")?;
    let tp_offset = i64::try_from(value)
        .ok()
        .zip(i64::try_from(offset).ok())
        .map(|(v, o)| v - o)
        .ok_or("TLS segment too large")?;
    Ok(Some(TlsSlot {
        tp_offset,
        exported,
    }))
}

/// The symbol's value (its offset in the TLS image), from `.dynsym` first.
fn symbol<'data, R: object::ReadRef<'data>>(
    elf: &ElfFile64<'data, Endianness, R>,
) -> Option<(u64, bool)> {
    let is_slot = |s: &object::read::elf::ElfSymbol64<'data, '_, Endianness, R>| {
        s.name() == Ok(SYMBOL) && s.kind() == SymbolKind::Tls && !s.is_undefined()
    };
    if let Some(s) = elf.dynamic_symbols().find(is_slot) {
        return Some((s.address(), true));
    }
    elf.symbols().find(is_slot).map(|s| (s.address(), false))
}

/// Finds the slot of a shared library mapped in process `pid` at `base`
/// (the address its file offset 0 is mapped at), opened through `path`
/// (e.g. `/proc/PID/map_files/…`).
pub fn find_in_library(pid: u32, path: &Path, base: u64) -> Result<LibraryCtx, ThreadCtxError> {
    let cache = open(path)?;
    let elf = parse(path, &cache)?;
    // The OTEP requires the symbol in .dynsym; a library's own access to
    // it is a dynamic relocation against that symbol.
    let Some(index) = elf
        .dynamic_symbols()
        .find(|s| s.name() == Ok(SYMBOL) && s.kind() == SymbolKind::Tls && !s.is_undefined())
        .map(|s| s.index())
    else {
        return Ok(LibraryCtx::NoVariable);
    };
    let Some(relocations) = elf.dynamic_relocations() else {
        return Ok(LibraryCtx::NoVariable);
    };
    for (address, reloc) in relocations {
        let RelocationFlags::Elf { r_type } = reloc.flags() else {
            continue;
        };
        if reloc.target() != RelocationTarget::Symbol(index) {
            continue;
        }
        // TLSDESC: {resolver, argument}; for a block in static TLS the
        // argument is the offset from the thread pointer. TPOFF64 (initial
        // exec): the entry is the offset itself.
        let at = match r_type {
            R_X86_64_TLSDESC => base.wrapping_add(address).wrapping_add(8),
            R_X86_64_TPOFF64 => base.wrapping_add(address),
            _ => continue,
        };
        if let Some(offset) = read_i64(pid, at).filter(|&o| is_static_tls_offset(o)) {
            return Ok(LibraryCtx::Slot(TlsSlot {
                tp_offset: offset,
                exported: true,
            }));
        }
    }
    Ok(LibraryCtx::NotYet)
}

/// What a mapped library says about thread context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibraryCtx {
    /// It does not define the variable: it never will.
    NoVariable,
    /// It defines it, but its GOT entry holds no static-TLS offset (yet).
    NotYet,
    Slot(TlsSlot),
}

/// The kernel's identity of the file at `path` (links followed).
pub fn key_of(path: &Path) -> std::io::Result<agent_ebpf::FileKey> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).map(|m| file_key(m.dev(), m.ino()))
}

/// Static TLS sits just below the thread pointer; anything else in a GOT
/// entry (a lazy resolver's argument, a dynamic-TLS descriptor) is a
/// pointer, far away.
fn is_static_tls_offset(offset: i64) -> bool {
    (-(1 << 24)..0).contains(&offset)
}

fn read_i64(pid: u32, address: u64) -> Option<i64> {
    use std::os::unix::fs::FileExt as _;
    let mem = File::open(format!("/proc/{pid}/mem")).ok()?;
    let mut buf = [0u8; 8];
    mem.read_exact_at(&mut buf, address).ok()?;
    Some(i64::from_ne_bytes(buf))
}

/// How far below the thread pointer the executable's TLS block starts:
/// glibc's `_dl_determine_tlsoffset` for the first module (musl's
/// `static_init_tls` computes the same), which keeps the block's first byte
/// congruent to `p_vaddr` modulo the alignment.
fn block_offset(vaddr: u64, memsz: u64, align: u64) -> Option<u64> {
    let firstbyte = vaddr.wrapping_neg() & (align - 1);
    let unaligned = memsz.saturating_sub(firstbyte);
    Some(unaligned.checked_next_multiple_of(align)? + firstbyte)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_offset_matches_glibc_and_musl() {
        // musl: size = memsz + ((-memsz - image) & (align - 1)), with the
        // image at a page-aligned base plus p_vaddr.
        let musl = |vaddr: u64, memsz: u64, align: u64| {
            memsz + (memsz.wrapping_neg().wrapping_sub(vaddr) & (align - 1))
        };
        for (vaddr, memsz, align) in [
            (0x3000, 8, 8),
            (0x3de8, 0x20, 8),
            (0x2fd8, 0x48, 0x40),
            (0x4008, 20, 16),
            (0x1000, 0, 1),
        ] {
            let got = block_offset(vaddr, memsz, align).unwrap();
            assert_eq!(got, musl(vaddr, memsz, align), "{vaddr:#x} {memsz} {align}");
            assert_eq!((got.wrapping_neg()) & (align - 1), vaddr & (align - 1));
        }
        assert_eq!(block_offset(0x4008, 20, 16), Some(24));
    }

    #[test]
    fn a_file_that_is_not_elf_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-elf");
        std::fs::write(&path, b"#!/bin/sh\necho hi\n").unwrap();
        let err = find_in_file(&path).unwrap_err();
        assert!(matches!(err, ThreadCtxError::Elf { .. }), "{err}");
        let err = find_in_file(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(err, ThreadCtxError::Open { .. }), "{err}");
    }

    /// Real executables, built the ways a writer's might be, each printing
    /// where its own thread's slot is relative to the thread pointer (fs:0
    /// holds the thread pointer itself in glibc and musl).
    #[test]
    fn finds_the_slot_where_the_program_itself_sees_it() {
        const PROGRAM: &str = r#"
            #include <stdio.h>
            __thread char before[PAD] __attribute__((aligned(ALIGN)));
            __thread void *otel_thread_ctx_v1;
            __thread int after = 7;
            int main(void) {
                char *tp;
                __asm__("mov %%fs:0, %0" : "=r"(tp));
                before[0] = 1;
                printf("%ld\n", (long)((char *)&otel_thread_ctx_v1 - tp));
                return after + before[0] == 8 ? 0 : 1;
            }
        "#;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("ctx.c");
        std::fs::write(&src, PROGRAM).unwrap();
        let builds: &[(&str, &[&str], bool)] = &[
            ("exported", &["-rdynamic", "-DPAD=1", "-DALIGN=1"], true),
            ("symtab only", &["-DPAD=1", "-DALIGN=1"], false),
            (
                "64-byte aligned neighbour",
                &["-rdynamic", "-DPAD=40", "-DALIGN=64"],
                true,
            ),
            (
                "TLSDESC dialect, PIE",
                &[
                    "-rdynamic",
                    "-fPIE",
                    "-pie",
                    "-mtls-dialect=gnu2",
                    "-DPAD=24",
                    "-DALIGN=16",
                ],
                true,
            ),
            ("static", &["-static", "-DPAD=8", "-DALIGN=32"], false),
        ];
        for (name, flags, exported) in builds {
            let exe = dir.path().join(name.replace(' ', "-"));
            let status = std::process::Command::new("gcc")
                .args(["-O2", "-o"])
                .arg(&exe)
                .args(*flags)
                .arg(&src)
                .status()
                .expect("gcc runs (cargo xtask setup installs it)");
            assert!(status.success(), "{name}: gcc failed");
            let out = std::process::Command::new(&exe).output().unwrap();
            assert!(out.status.success(), "{name}: the program failed");
            let seen: i64 = String::from_utf8(out.stdout)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let slot = find_in_file(&exe)
                .unwrap()
                .unwrap_or_else(|| panic!("{name}: no slot"));
            assert_eq!(slot.tp_offset, seen, "{name}");
            assert_eq!(slot.exported, *exported, "{name}");
            let bytes = std::fs::read(&exe).unwrap();
            assert_eq!(
                find_in_elf(&bytes).unwrap(),
                Some(slot),
                "{name}: from bytes"
            );
        }
    }

    #[test]
    fn an_executable_without_the_symbol_has_no_slot() {
        let exe = std::env::current_exe().unwrap();
        assert_eq!(find_in_file(&exe).unwrap(), None);
    }
}
