//! A BTF-defined task-local storage map (BPF_MAP_TYPE_TASK_STORAGE), which
//! aya-ebpf 0.2 does not wrap: a value hangs off each task_struct, found by
//! a pointer chase instead of a hash, and freed with the task.
use core::ffi::c_void;

use aya_ebpf::bindings::{BPF_F_NO_PREALLOC, BPF_LOCAL_STORAGE_GET_F_CREATE, bpf_map_type};
use aya_ebpf::helpers::bpf_task_storage_get;

/// The layout libbpf and aya read from BTF: each field's pointee type
/// encodes one attribute of the map (type, key, value, size, flags).
#[repr(C)]
pub struct TaskStorage<T> {
    r#type: *const [i32; bpf_map_type::BPF_MAP_TYPE_TASK_STORAGE as usize],
    key: *const i32,
    value: *const T,
    max_entries: *const [i32; 0],
    map_flags: *const [i32; BPF_F_NO_PREALLOC as usize],
}

// SAFETY: the fields are placeholders the loader patches; never dereferenced.
unsafe impl<T> Sync for TaskStorage<T> {}

impl<T> TaskStorage<T> {
    pub const fn new() -> Self {
        Self {
            r#type: core::ptr::null(),
            key: core::ptr::null(),
            value: core::ptr::null(),
            max_entries: core::ptr::null(),
            map_flags: core::ptr::null(),
        }
    }

    #[inline(always)]
    #[expect(
        clippy::mut_from_ref,
        reason = "the value is the kernel's per-task memory, not borrowed from the map \
                  definition; one program run holds at most one reference to it"
    )]
    fn lookup(&self, task: *mut c_void, flags: u64) -> Option<&mut T> {
        let map = core::ptr::from_ref(self).cast_mut().cast::<c_void>();
        // SAFETY: `task` is a trusted task_struct pointer (a tp_btf argument
        // or the current task); the verifier checks it. A NULL return means
        // no value (or none could be made).
        let value = unsafe { bpf_task_storage_get(map, task.cast(), core::ptr::null_mut(), flags) };
        // SAFETY: a non-NULL return points at this task's value, valid for
        // the program run.
        unsafe { value.cast::<T>().as_mut() }
    }

    /// The task's value, if it has one.
    #[inline(always)]
    pub fn get(&self, task: *mut c_void) -> Option<&mut T> {
        self.lookup(task, 0)
    }

    /// The task's value, zero-initialised on first use.
    #[inline(always)]
    pub fn get_or_create(&self, task: *mut c_void) -> Option<&mut T> {
        self.lookup(task, u64::from(BPF_LOCAL_STORAGE_GET_F_CREATE))
    }
}
