//! How full the kernel's event ring is, for the ring-buffer fill metric: the
//! producer and consumer positions, read from a read-only mapping of the
//! ring's two position pages (the reader keeps its own mapping).
use std::{
    os::fd::{AsFd, AsRawFd as _},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

/// A read-only view of a BPF ring buffer's positions.
pub struct RingFill {
    base: NonNull<libc::c_void>,
    len: usize,
    page: usize,
    size: u64,
}

// SAFETY: the mapping is read with atomic loads only and lives until drop.
unsafe impl Send for RingFill {}

impl RingFill {
    /// Maps the consumer and producer pages of the ring `fd` of `size`
    /// bytes. The kernel allows read-only mappings of both.
    pub fn new(fd: impl AsFd, size: u32) -> std::io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .map_err(|_| std::io::Error::other("page size"))?;
        let len = 2 * page;
        // SAFETY: a fresh shared read-only mapping of the map fd; checked
        // for failure below, unmapped in drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base = NonNull::new(ptr).ok_or_else(|| std::io::Error::other("mmap returned null"))?;
        Ok(Self {
            base,
            len,
            page,
            size: u64::from(size),
        })
    }

    fn position(&self, offset: usize) -> u64 {
        // SAFETY: offset 0 and one page in are the first u64 of each of the
        // two mapped pages; the kernel and the reader update them
        // atomically.
        let p = unsafe { self.base.as_ptr().cast::<u8>().add(offset) }.cast::<AtomicU64>();
        unsafe { (*p).load(Ordering::Acquire) }
    }

    /// Bytes written by the kernel and not yet consumed (record headers
    /// included).
    pub fn used_bytes(&self) -> u64 {
        let consumer = self.position(0);
        let producer = self.position(self.page);
        producer.saturating_sub(consumer).min(self.size)
    }

    pub fn size_bytes(&self) -> u64 {
        self.size
    }
}

impl Drop for RingFill {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe {
            libc::munmap(self.base.as_ptr(), self.len);
        }
    }
}
