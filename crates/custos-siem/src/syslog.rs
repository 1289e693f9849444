//! Syslog: RFC 5424 messages over TCP or TLS, framed by octet counting (RFC 6587 §3.4.1; the
//! framing RFC 5425 prescribes for TLS).
//!
//! Each event is one message: facility 13 (log audit), a severity from the event, the event's
//! time, `custos` as APP-NAME, the event kind as MSGID, `[custos@32473 seq="…" uid="…"]` as
//! structured data (32473 is the enterprise number RFC 5612 reserves for documentation), and
//! the event as JSON (UTF-8, with the BOM RFC 5424 asks for) as MSG.
//!
//! Syslog has no acknowledgement: a batch counts as delivered once written to the connection.
//! Before each batch the connection is checked for a close by the receiver (which never sends
//! anything), so a batch is not written into a connection the receiver already dropped.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crate::{Record, SiemError, Sink};

/// Facility 13, "log audit".
const FACILITY: u8 = 13;
/// How long connecting and writing one batch may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The syslog sink.
pub struct SyslogSink {
    address: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    conn: Option<Connection>,
    hostname: String,
    procid: u32,
}

impl std::fmt::Debug for SyslogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogSink").field("address", &self.address).field("tls", &self.tls.is_some()).finish()
    }
}

/// An open connection and a handle on its socket to look for a close.
struct Connection {
    socket: TcpStream,
    stream: Box<dyn Write + Send>,
}

impl SyslogSink {
    /// A sink sending to `address` (`HOST:PORT`); over TLS when `tls` is given (the server's
    /// certificate must name HOST).
    pub fn new(address: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        Self { address: address.to_owned(), tls, conn: None, hostname: hostname(), procid: std::process::id() }
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> SiemError {
        SiemError::Unreachable { target: self.address.clone(), reason: e.to_string() }
    }

    fn connect(&self) -> Result<Connection, SiemError> {
        let addrs = self.address.to_socket_addrs().map_err(|e| self.unreachable(e))?;
        let mut last = self.unreachable("no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, TIMEOUT) {
                Ok(socket) => {
                    socket.set_write_timeout(Some(TIMEOUT)).map_err(|e| self.unreachable(e))?;
                    socket.set_nodelay(true).map_err(|e| self.unreachable(e))?;
                    let writer = socket.try_clone().map_err(|e| self.unreachable(e))?;
                    let stream: Box<dyn Write + Send> = match &self.tls {
                        None => Box::new(writer),
                        Some(config) => {
                            let host = self.address.rsplit_once(':').map_or(self.address.as_str(), |(h, _)| h);
                            let host = host.trim_start_matches('[').trim_end_matches(']');
                            let name = rustls_pki_types::ServerName::try_from(host.to_owned())
                                .map_err(|_| SiemError::Config(format!("`{host}` is not a server name")))?;
                            let tls =
                                rustls::ClientConnection::new(config.clone(), name).map_err(|e| self.unreachable(e))?;
                            let mut stream = rustls::StreamOwned::new(tls, writer);
                            // Finish the handshake now, so a refused certificate shows here.
                            while stream.conn.is_handshaking() {
                                stream.conn.complete_io(&mut stream.sock).map_err(|e| self.unreachable(e))?;
                            }
                            Box::new(stream)
                        }
                    };
                    return Ok(Connection { socket, stream });
                }
                Err(e) => last = self.unreachable(e),
            }
        }
        Err(last)
    }

    /// One message, framed: `LEN SP <PRI>1 TIME HOST APP PROCID MSGID SD BOM JSON`.
    pub fn frame(&self, r: &Record, out: &mut Vec<u8>) {
        let pri = u32::from(FACILITY) * 8 + u32::from(r.syslog_severity.min(7));
        let time = u64::try_from(r.time_ms)
            .map(|ms| humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string())
            .unwrap_or_else(|_| "-".to_owned());
        let message = format!(
            "<{pri}>1 {time} {} custos {} {} [custos@32473 seq=\"{}\" uid=\"{}\"] \u{feff}{}",
            self.hostname, self.procid, r.kind, r.seq, r.uid, r.json
        );
        out.extend_from_slice(format!("{} ", message.len()).as_bytes());
        out.extend_from_slice(message.as_bytes());
    }
}

/// Whether the receiver closed (or broke) the connection: it never sends, so anything but
/// "nothing to read yet" means the connection is gone.
fn closed(socket: &TcpStream) -> bool {
    if socket.set_nonblocking(true).is_err() {
        return true;
    }
    let mut byte = [0u8; 1];
    let gone = !matches!((&*socket).read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    gone || socket.set_nonblocking(false).is_err()
}

impl Sink for SyslogSink {
    fn deliver(&mut self, batch: &[Record]) -> Result<(), SiemError> {
        if self.conn.as_ref().is_some_and(|c| closed(&c.socket)) {
            self.conn = None;
        }
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect()?,
        };
        let mut bytes = Vec::with_capacity(batch.iter().map(|r| r.json.len() + 160).sum());
        for r in batch {
            self.frame(r, &mut bytes);
        }
        conn.stream.write_all(&bytes).and_then(|()| conn.stream.flush()).map_err(|e| self.unreachable(e))?;
        self.conn = Some(conn);
        Ok(())
    }
}

/// This host's name as RFC 5424 allows it (printable ASCII, at most 255), else `-`.
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = name.trim().chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
    if name.is_empty() {
        "-".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64) -> Record {
        Record { seq, uid: "u".into(), time_ms: 0, kind: "run.started", syslog_severity: 6, json: "{}".into() }
    }

    /// A receiver that dropped the connection gets the next batch on a new one, not into the
    /// dead one.
    #[test]
    fn a_closed_connection_is_noticed_and_the_next_batch_reconnects() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut sink = SyslogSink::new(&listener.local_addr().unwrap().to_string(), None);
        sink.deliver(&[record(1)]).unwrap();
        let (first, _) = listener.accept().unwrap();
        let mut got = String::new();
        let mut reader = std::io::BufReader::new(&first);
        while !got.contains("{}") {
            let mut buf = [0u8; 256];
            let n = reader.read(&mut buf).unwrap();
            got.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
        drop(reader);
        first.shutdown(std::net::Shutdown::Both).unwrap();
        drop(first);
        // The close reaches the sender's socket before the next batch.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !sink.conn.as_ref().is_some_and(|c| closed(&c.socket)) {
            assert!(std::time::Instant::now() < deadline, "the close was never seen");
            std::thread::sleep(Duration::from_millis(10));
        }
        sink.deliver(&[record(2)]).unwrap();
        let (mut second, _) = listener.accept().unwrap();
        let mut text = String::new();
        second.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        let n = second.read(&mut buf).unwrap();
        text.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        assert!(text.contains("seq=\"2\""), "{text}");
    }

    #[test]
    fn frames_are_octet_counted_rfc5424() {
        let sink = SyslogSink { hostname: "gw".into(), procid: 7, ..SyslogSink::new("127.0.0.1:1", None) };
        let r = Record {
            seq: 3,
            uid: "ab".into(),
            time_ms: 1_700_000_000_123,
            kind: "call.decided",
            syslog_severity: 4,
            json: "{\"é\":1}".into(),
        };
        let mut out = Vec::new();
        sink.frame(&r, &mut out);
        let text = String::from_utf8(out).unwrap();
        let (len, msg) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len(), "the count is in octets");
        assert_eq!(
            msg,
            "<108>1 2023-11-14T22:13:20.123Z gw custos 7 call.decided [custos@32473 seq=\"3\" uid=\"ab\"] \u{feff}{\"é\":1}"
        );
    }
}
