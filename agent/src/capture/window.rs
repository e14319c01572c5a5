//! A read buffer that a capture reader can look ahead in, for checking a
//! record before consuming it and for scanning damaged bytes for the next
//! intact record.

use std::io::{self, Read};

/// Bytes read from the input at a time while the buffer is small.
const MIN_CAPACITY: usize = 256 * 1024;

pub(super) struct Window<R> {
    input: R,
    buf: Vec<u8>,
    /// `buf[start..end]` is read but not yet consumed.
    start: usize,
    end: usize,
    /// File offset of `buf[start]`.
    offset: u64,
    eof: bool,
}

impl<R: Read> Window<R> {
    pub(super) fn new(input: R) -> Self {
        Self {
            input,
            buf: Vec::new(),
            start: 0,
            end: 0,
            offset: 0,
            eof: false,
        }
    }

    /// The bytes read and not consumed.
    #[inline]
    pub(super) fn bytes(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or_default()
    }

    /// File offset of the first byte of [`bytes`](Self::bytes).
    #[inline]
    pub(super) fn offset(&self) -> u64 {
        self.offset
    }

    /// Makes at least `n` bytes available unless the input ends first, and
    /// returns how many are. The buffer grows only when it is full of data
    /// actually read, so a large `n` taken from a corrupt length field
    /// cannot allocate more than about twice what the input holds.
    #[inline]
    pub(super) fn fill(&mut self, n: usize) -> io::Result<usize> {
        while self.end - self.start < n && !self.eof {
            self.read_more(n)?;
        }
        Ok(self.end - self.start)
    }

    #[inline]
    pub(super) fn consume(&mut self, n: usize) {
        let n = n.min(self.end - self.start);
        self.start += n;
        self.offset += n as u64;
    }

    /// Consumes everything up to the end of the input; returns the bytes.
    pub(super) fn consume_to_end(&mut self) -> io::Result<u64> {
        let mut skipped = 0;
        loop {
            let n = self.end - self.start;
            self.consume(n);
            skipped += n as u64;
            if self.eof {
                return Ok(skipped);
            }
            self.read_more(MIN_CAPACITY)?;
        }
    }

    /// One read into the free space, first making room for `want` bytes.
    fn read_more(&mut self, want: usize) -> io::Result<()> {
        if self.end == self.buf.len() {
            // Move the unconsumed bytes to the front, then grow if still full.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.buf.len() {
                let grown = (self.buf.len() * 2)
                    .max(MIN_CAPACITY)
                    .min(want.max(MIN_CAPACITY));
                self.buf.resize(grown.max(self.buf.len() + 1), 0);
            }
        }
        let free = self.buf.get_mut(self.end..).unwrap_or_default();
        match self.input.read(free) {
            Ok(0) => self.eof = true,
            Ok(n) => self.end += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out at most 3 bytes per read, like a slow pipe.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(3).min(self.0.len());
            let (head, tail) = self.0.split_at(n);
            buf[..n].copy_from_slice(head);
            self.0 = tail;
            Ok(n)
        }
    }

    #[test]
    fn fills_consumes_and_tracks_the_offset() {
        let data: Vec<u8> = (0..=255).collect();
        let mut w = Window::new(Trickle(&data));
        assert!(w.fill(10).expect("fill") >= 10);
        assert_eq!(&w.bytes()[..10], &data[..10]);
        w.consume(7);
        assert_eq!(w.offset(), 7);
        assert_eq!(w.bytes()[0], 7);
        assert_eq!(w.fill(1000).expect("fill"), 249, "the input ends first");
        assert_eq!(w.consume_to_end().expect("skip"), 249);
        assert_eq!(w.offset(), 256);
        assert_eq!(w.fill(1).expect("fill"), 0);
    }

    #[test]
    fn a_huge_request_allocates_only_what_arrives() {
        let data = vec![7u8; 1000];
        let mut w = Window::new(&data[..]);
        assert_eq!(w.fill(usize::MAX).expect("fill"), 1000);
        assert!(w.buf.len() <= MIN_CAPACITY, "{}", w.buf.len());
    }
}
