//! Newline-delimited frames, as MCP's stdio transport sends them.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One frame read from the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete line without its line terminator.
    Line(Vec<u8>),
    /// A line longer than the limit. Only its first `prefix` bytes were kept (to recover the id
    /// for the error reply); the rest was read and dropped as it arrived.
    Oversized { prefix: Vec<u8>, total: usize },
}

/// How much of an oversized frame is kept to find its `id` and `method`.
const SNIFF_PREFIX: usize = 64 * 1024;

/// Reads frames from `reader`, never holding more than `max_bytes` (plus one buffer) of a line.
///
/// Cancel-safe: a partly read line lives in the reader, not in the future, so a `select!` that
/// drops [`FrameReader::next_frame`] midway loses nothing; the next call continues the line.
#[derive(Debug)]
pub struct FrameReader<R> {
    reader: R,
    max_bytes: usize,
    /// The line read so far (only its first bytes once it is known to be oversized).
    line: Vec<u8>,
    /// Bytes of the current line seen so far, kept or not.
    total: usize,
}

impl<R: AsyncBufRead + Unpin> FrameReader<R> {
    pub fn new(reader: R, max_bytes: usize) -> Self {
        Self { reader, max_bytes, line: Vec::new(), total: 0 }
    }

    /// The next non-empty frame, or `None` at end of stream. A final line without a newline
    /// still counts as a frame.
    pub async fn next_frame(&mut self) -> std::io::Result<Option<Frame>> {
        loop {
            match self.read_line().await? {
                None => return Ok(None),
                Some(Frame::Line(line)) if line.iter().all(u8::is_ascii_whitespace) => continue,
                Some(frame) => return Ok(Some(frame)),
            }
        }
    }

    async fn read_line(&mut self) -> std::io::Result<Option<Frame>> {
        loop {
            // INVARIANT: the only await is here, before any state changes in this iteration, so
            // dropping the future at it leaves `line` and `total` consistent.
            let buf = self.reader.fill_buf().await?;
            if buf.is_empty() {
                // End of stream: a last line without a newline still counts.
                if self.total == 0 {
                    return Ok(None);
                }
                break;
            }
            let (chunk, found_newline) = match buf.iter().position(|b| *b == b'\n') {
                Some(at) => (buf.get(..at).unwrap_or_default(), true),
                None => (buf, false),
            };
            let used = chunk.len() + usize::from(found_newline);
            self.total += chunk.len();
            let room =
                if self.total > self.max_bytes { SNIFF_PREFIX.saturating_sub(self.line.len()) } else { chunk.len() };
            self.line.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
            if self.total > self.max_bytes && self.line.len() > SNIFF_PREFIX {
                self.line.truncate(SNIFF_PREFIX);
            }
            self.reader.consume(used);
            if found_newline {
                break;
            }
        }
        let mut line = std::mem::take(&mut self.line);
        let total = std::mem::replace(&mut self.total, 0);
        if total > self.max_bytes {
            return Ok(Some(Frame::Oversized { prefix: line, total }));
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(Some(Frame::Line(line)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    async fn frames(input: &[u8], max: usize, buf: usize) -> Vec<Frame> {
        let mut r = FrameReader::new(BufReader::with_capacity(buf, input), max);
        let mut out = Vec::new();
        while let Some(f) = r.next_frame().await.unwrap() {
            out.push(f);
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_and_skips_blank_ones() {
        let got = frames(b"{\"a\":1}\n\n  \r\n{\"b\":2}\r\n{\"c\":3}", 100, 4).await;
        assert_eq!(
            got,
            vec![
                Frame::Line(b"{\"a\":1}".to_vec()),
                Frame::Line(b"{\"b\":2}".to_vec()),
                Frame::Line(b"{\"c\":3}".to_vec()),
            ]
        );
    }

    #[tokio::test]
    async fn oversized_line_is_refused_and_the_next_line_still_read() {
        let mut input = vec![b'x'; 300];
        input.push(b'\n');
        input.extend_from_slice(b"{\"ok\":true}\n");
        let got = frames(&input, 100, 16).await;
        assert_eq!(got.len(), 2);
        match &got[0] {
            Frame::Oversized { prefix, total } => {
                assert_eq!(*total, 300);
                assert!(prefix.len() <= 300);
            }
            other => panic!("expected oversized, got {other:?}"),
        }
        assert_eq!(got[1], Frame::Line(b"{\"ok\":true}".to_vec()));
    }

    #[tokio::test]
    async fn a_line_exactly_at_the_limit_is_accepted() {
        let mut input = vec![b'y'; 100];
        input.push(b'\n');
        let got = frames(&input, 100, 7).await;
        assert_eq!(got, vec![Frame::Line(vec![b'y'; 100])]);
    }

    #[tokio::test]
    async fn a_dropped_read_loses_nothing() {
        // The writer sends half a line, the read is abandoned (as a select! would), then the
        // rest arrives: the next read must return the whole line.
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut r = FrameReader::new(BufReader::new(rx), 1000);
        use tokio::io::AsyncWriteExt;
        tx.write_all(b"{\"half\":").await.unwrap();
        let abandoned = tokio::time::timeout(std::time::Duration::from_millis(20), r.next_frame()).await;
        assert!(abandoned.is_err(), "no full line yet");
        tx.write_all(b"1}\n").await.unwrap();
        assert_eq!(r.next_frame().await.unwrap(), Some(Frame::Line(b"{\"half\":1}".to_vec())));
    }

    #[tokio::test]
    async fn oversized_prefix_is_bounded() {
        let input = vec![b'z'; SNIFF_PREFIX * 3];
        let got = frames(&input, 10, 8192).await;
        match &got[..] {
            [Frame::Oversized { prefix, total }] => {
                assert_eq!(prefix.len(), SNIFF_PREFIX);
                assert_eq!(*total, SNIFF_PREFIX * 3);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
