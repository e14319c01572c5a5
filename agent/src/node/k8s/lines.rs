//! Splits a watch stream into its newline-delimited JSON events, without
//! letting one endless line take all memory.

/// Bytes received and not yet returned as lines.
pub(crate) struct Lines {
    buf: Vec<u8>,
    /// Where the unreturned data starts in `buf`.
    start: usize,
    /// How far `buf` is known to hold no newline (from `start`).
    scanned: usize,
    max_line: usize,
}

/// A line longer than the limit: the stream cannot be followed further.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LineTooLong {
    pub limit: usize,
}

impl Lines {
    pub fn new(max_line: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            max_line,
        }
    }

    /// Adds received data; fails once the unfinished line exceeds the limit.
    pub fn push(&mut self, data: &[u8]) -> Result<(), LineTooLong> {
        // Drop the returned lines first, so the buffer holds at most one
        // unfinished line plus one chunk.
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
        let unfinished = match self.buf[self.scanned..].iter().rposition(|&b| b == b'\n') {
            Some(at) => self.buf.len() - (self.scanned + at + 1),
            None => self.buf.len(),
        };
        if unfinished > self.max_line {
            return Err(self.too_long());
        }
        Ok(())
    }

    /// The next complete line, without its newline (nor a `\r` before it).
    pub fn next_line(&mut self) -> Option<Result<&[u8], LineTooLong>> {
        let Some(at) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') else {
            self.scanned = self.buf.len();
            return None;
        };
        let end = self.scanned + at;
        let line_start = self.start;
        self.start = end + 1;
        self.scanned = self.start;
        if end - line_start > self.max_line {
            return Some(Err(self.too_long()));
        }
        let line = &self.buf[line_start..end];
        Some(Ok(line.strip_suffix(b"\r").unwrap_or(line)))
    }

    fn too_long(&self) -> LineTooLong {
        LineTooLong {
            limit: self.max_line,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(lines: &mut Lines) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(line) = lines.next_line() {
            out.push(String::from_utf8(line.unwrap().to_vec()).unwrap());
        }
        out
    }

    #[test]
    fn lines_across_chunks() {
        let mut lines = Lines::new(100);
        lines.push(b"{\"a\":1}\n{\"b\"").unwrap();
        assert_eq!(drain(&mut lines), ["{\"a\":1}"]);
        lines.push(b":2}").unwrap();
        assert_eq!(drain(&mut lines), Vec::<String>::new());
        lines.push(b"\r\n\n{\"c\":3}\n{").unwrap();
        assert_eq!(drain(&mut lines), ["{\"b\":2}", "", "{\"c\":3}"]);
        lines.push(b"}\n").unwrap();
        assert_eq!(drain(&mut lines), ["{}"]);
        assert!(lines.buf.len() <= 3, "returned lines are dropped");
    }

    #[test]
    fn byte_by_byte() {
        let mut lines = Lines::new(100);
        let mut out = Vec::new();
        for b in b"one\ntwo\nthree\n" {
            lines.push(&[*b]).unwrap();
            out.extend(drain(&mut lines));
        }
        assert_eq!(out, ["one", "two", "three"]);
    }

    #[test]
    fn long_lines_are_refused() {
        let mut lines = Lines::new(8);
        lines.push(b"12345678\n").unwrap();
        assert_eq!(drain(&mut lines), ["12345678"]);
        lines.push(b"12345").unwrap();
        assert_eq!(lines.push(b"6789"), Err(LineTooLong { limit: 8 }));

        // A too-long line that arrives whole, followed by more.
        let mut lines = Lines::new(8);
        lines.push(b"123456789\nok\n").unwrap();
        assert!(matches!(
            lines.next_line(),
            Some(Err(LineTooLong { limit: 8 }))
        ));
    }
}
