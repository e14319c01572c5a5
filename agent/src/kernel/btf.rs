//! Struct member offsets from the running kernel's BTF.
//!
//! Rust eBPF programs have no CO-RE field relocations, so the agent looks the
//! offsets up here and passes them to the programs as load-time globals.
//! Only what that needs is parsed: type records, to walk structs and unions
//! (anonymous members included) by name.

use std::{collections::HashMap, path::Path};

/// Where the running kernel publishes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
/// Overrides [`VMLINUX_BTF`], e.g. in a container that mounts the host's
/// /sys elsewhere.
pub const BTF_PATH_ENV: &str = "SPANLET_KERNEL_BTF";

/// The kernel BTF file to read: `$SPANLET_KERNEL_BTF` or the sysfs one.
pub fn vmlinux_btf_path() -> std::path::PathBuf {
    std::env::var_os(BTF_PATH_ENV)
        .filter(|p| !p.is_empty())
        .map_or_else(|| VMLINUX_BTF.into(), Into::into)
}

const BTF_MAGIC: u16 = 0xeb9f;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error(
        "this kernel has no BTF at {path}; spanlet needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    Missing {
        path: String,
        source: std::io::Error,
    },
    #[error("malformed BTF in {path}: {what}")]
    Malformed { path: String, what: &'static str },
    #[error("kernel BTF has no struct {0}")]
    NoStruct(String),
    #[error("kernel BTF: struct {strukt} has no member {member}")]
    NoMember { strukt: String, member: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Struct,
    Union,
    Other,
}

#[derive(Clone, Debug)]
struct Member {
    name_off: u32,
    type_id: u32,
    /// Offset in bits from the start of the containing type.
    bit_offset: u32,
}

#[derive(Clone, Debug)]
struct Type {
    name_off: u32,
    kind: Kind,
    /// For typedef/const/volatile/restrict/type_tag: the type referred to.
    refers_to: Option<u32>,
    members: Vec<Member>,
}

/// Parsed kernel BTF: enough to resolve member offsets by name.
pub struct KernelBtf {
    path: String,
    strings: Vec<u8>,
    /// Index 0 is BTF's `void`.
    types: Vec<Type>,
    structs_by_name: HashMap<String, u32>,
}

impl KernelBtf {
    /// Reads the running kernel's BTF.
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_file(&vmlinux_btf_path())
    }

    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Missing {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&data, path.display().to_string())
    }

    fn parse(data: &[u8], path: String) -> Result<Self, BtfError> {
        let bad = |what| BtfError::Malformed {
            path: path.clone(),
            what,
        };
        let u16_at = |off: usize| -> Result<u16, BtfError> {
            let bytes = data.get(off..off + 2).ok_or_else(|| bad("truncated"))?;
            Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
        };
        let u32_at = |off: usize| -> Result<u32, BtfError> {
            let bytes = data.get(off..off + 4).ok_or_else(|| bad("truncated"))?;
            Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
        };
        if u16_at(0)? != BTF_MAGIC {
            return Err(bad("bad magic (not little-endian BTF)"));
        }
        let hdr_len = u32_at(4)? as usize;
        let type_off = u32_at(8)? as usize;
        let type_len = u32_at(12)? as usize;
        let str_off = u32_at(16)? as usize;
        let str_len = u32_at(20)? as usize;
        let types_start = hdr_len + type_off;
        let types_end = types_start + type_len;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or_else(|| bad("string section out of bounds"))?
            .to_vec();
        if types_end > data.len() {
            return Err(bad("type section out of bounds"));
        }

        let mut types = vec![Type {
            name_off: 0,
            kind: Kind::Other,
            refers_to: None,
            members: Vec::new(),
        }];
        let mut pos = types_start;
        while pos < types_end {
            let name_off = u32_at(pos)?;
            let info = u32_at(pos + 4)?;
            let size_or_type = u32_at(pos + 8)?;
            pos += 12;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 != 0;
            let kind = (info >> 24) & 0x1f;
            let mut ty = Type {
                name_off,
                kind: Kind::Other,
                refers_to: None,
                members: Vec::new(),
            };
            // Sizes of the data after each kind's common header (btf.h).
            match kind {
                1 => pos += 4, // INT
                2 | 7 | 8 | 9 | 10 | 11 | 12 | 18 => {
                    // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, TYPE_TAG
                    if matches!(kind, 8 | 9 | 10 | 11 | 18) {
                        ty.refers_to = Some(size_or_type);
                    }
                }
                3 => pos += 12, // ARRAY
                4 | 5 => {
                    // STRUCT, UNION
                    ty.kind = if kind == 4 { Kind::Struct } else { Kind::Union };
                    for _ in 0..vlen {
                        let m_name = u32_at(pos)?;
                        let m_type = u32_at(pos + 4)?;
                        let m_off = u32_at(pos + 8)?;
                        // With kind_flag, the high 8 bits are a bitfield size.
                        let bit_offset = if kind_flag {
                            m_off & 0x00ff_ffff
                        } else {
                            m_off
                        };
                        ty.members.push(Member {
                            name_off: m_name,
                            type_id: m_type,
                            bit_offset,
                        });
                        pos += 12;
                    }
                }
                6 => pos += 8 * vlen,   // ENUM
                13 => pos += 8 * vlen,  // FUNC_PROTO
                14 => pos += 4,         // VAR
                15 => pos += 12 * vlen, // DATASEC
                16 => {}                // FLOAT
                17 => pos += 4,         // DECL_TAG
                19 => pos += 12 * vlen, // ENUM64
                _ => return Err(bad("unknown BTF kind")),
            }
            types.push(ty);
        }

        let mut btf = Self {
            path,
            strings,
            types,
            structs_by_name: HashMap::new(),
        };
        for (id, ty) in btf.types.iter().enumerate() {
            // Forward declarations have no members; keep the first full one.
            if ty.kind == Kind::Struct && !ty.members.is_empty() {
                let name = btf.name(ty.name_off).to_owned();
                btf.structs_by_name.entry(name).or_insert(id as u32);
            }
        }
        Ok(btf)
    }

    fn name(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// Follows typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let ty = self.types.get(id as usize)?;
            match ty.refers_to {
                Some(next) => id = next,
                None => return Some(ty),
            }
        }
        None
    }

    /// Byte offset of `path` (e.g. "thread_info.flags") inside `struct strukt`,
    /// looking through anonymous structs and unions on the way.
    pub fn member_offset(&self, strukt: &str, path: &str) -> Result<u32, BtfError> {
        let id = *self
            .structs_by_name
            .get(strukt)
            .ok_or_else(|| BtfError::NoStruct(strukt.to_owned()))?;
        let missing = || BtfError::NoMember {
            strukt: strukt.to_owned(),
            member: path.to_owned(),
        };
        let mut ty = self.resolve(id).ok_or_else(missing)?;
        let mut bits = 0u32;
        for part in path.split('.') {
            let (off, member_ty) = self.find_member(ty, part, 0).ok_or_else(missing)?;
            bits += off;
            ty = self.resolve(member_ty).ok_or_else(missing)?;
        }
        if !bits.is_multiple_of(8) {
            return Err(BtfError::Malformed {
                path: self.path.clone(),
                what: "member is a bitfield",
            });
        }
        Ok(bits / 8)
    }

    fn find_member(&self, ty: &Type, name: &str, depth: u32) -> Option<(u32, u32)> {
        if depth > 8 || !matches!(ty.kind, Kind::Struct | Kind::Union) {
            return None;
        }
        for m in &ty.members {
            let m_name = self.name(m.name_off);
            if m_name == name {
                return Some((m.bit_offset, m.type_id));
            }
            if m_name.is_empty() {
                let inner = self.resolve(m.type_id)?;
                if let Some((off, id)) = self.find_member(inner, name, depth + 1) {
                    return Some((m.bit_offset + off, id));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_names_btf() {
        let err = KernelBtf::from_file(Path::new("/nonexistent/vmlinux"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("no BTF"), "{err}");
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for data in [
            &b""[..],
            b"\x9f\xeb",
            b"\x9f\xeb\x01\x00\x18\x00\x00\x00",
            &[0xff; 64],
        ] {
            assert!(KernelBtf::parse(data, "x".into()).is_err());
        }
    }

    /// Checked against the running kernel: pt_regs is a fixed ABI on x86_64.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn running_kernel_offsets() {
        let Ok(btf) = KernelBtf::from_sys_fs() else {
            eprintln!("skipping: no kernel BTF");
            return;
        };
        assert_eq!(btf.member_offset("pt_regs", "orig_ax").unwrap(), 120);
        assert_eq!(btf.member_offset("pt_regs", "di").unwrap(), 112);
        assert_eq!(btf.member_offset("pt_regs", "r10").unwrap(), 56);
        assert_eq!(
            btf.member_offset("task_struct", "thread_info.flags")
                .unwrap(),
            0
        );
        let pid = btf.member_offset("task_struct", "pid").unwrap();
        assert_eq!(btf.member_offset("task_struct", "tgid").unwrap(), pid + 4);
        assert!(btf.member_offset("task_struct", "no_such_field").is_err());
    }
}
