//! The load generator's own WebSocket client for `ws://`: the upgrade handshake, then frames
//! written straight onto the socket's write half and parsed straight off its read half, with no
//! lock between the two (the socket is split by ownership) and no copies beyond one frame
//! buffer. `wss://` goes through tungstenite instead.
//!
//! Only what a client needs: text/binary/close/ping/pong, fragmented messages reassembled, no
//! extensions. Client frames are masked (RFC 6455 §5.3) with a key from a per-shard xorshift
//! generator: unpredictable enough for a load test, and the server's unmasking work is the same.

use std::io;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::Url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::SimError;
use crate::error::excerpt;

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// A message larger than this is a protocol failure (the gateway sends ~4.4 KB).
const MAX_MESSAGE: usize = 16 << 20;
/// The server's handshake response must fit in this.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// Read granularity; the buffer only grows past it for a larger frame.
const READ_CHUNK: usize = 8 * 1024;

/// Dials `url` (ws://) and upgrades; `auth` becomes `Authorization: Basic`.
pub async fn connect(
    url: &Url,
    redacted: &str,
    auth: Option<&(String, String)>,
    limit: Duration,
) -> Result<(Reader, Writer), SimError> {
    match tokio::time::timeout(limit, dial(url, redacted, auth)).await {
        Ok(r) => r,
        Err(_) => Err(SimError::ConnectTimeout { url: redacted.to_string(), timeout: limit }),
    }
}

async fn dial(url: &Url, redacted: &str, auth: Option<&(String, String)>) -> Result<(Reader, Writer), SimError> {
    let fail = |reason: String| SimError::Connect { url: redacted.to_string(), reason };
    let host = url.host_str().ok_or_else(|| fail("no host".into()))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let mut tcp = TcpStream::connect(format!("{host}:{port}")).await.map_err(|e| fail(e.to_string()))?;
    // Nagle would hold 20 ms frames back behind delayed ACKs and blur the pacing.
    tcp.set_nodelay(true).map_err(|e| fail(e.to_string()))?;

    let key = generate_key();
    let request = upgrade_request(url, &key, auth);
    tcp.write_all(request.as_bytes()).await.map_err(|e| fail(e.to_string()))?;

    let mut buf = Vec::with_capacity(1024);
    let head_len = loop {
        if let Some(at) = find(&buf, b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > MAX_RESPONSE_HEAD {
            return Err(fail("handshake response head over 16 KiB".into()));
        }
        buf.reserve(1024);
        let n = tcp.read_buf(&mut buf).await.map_err(|e| fail(e.to_string()))?;
        if n == 0 {
            return Err(fail("connection closed during the handshake".into()));
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    let status = parse_status(&head).ok_or_else(|| fail(format!("not an HTTP response: {}", excerpt(&head))))?;
    if status != 101 {
        // What follows the head is (the start of) the body; enough for an error message.
        let body = String::from_utf8_lossy(&buf[head_len..]).into_owned();
        return Err(SimError::Handshake { url: redacted.to_string(), status, body: excerpt(&body) });
    }
    let accept = header(&head, "sec-websocket-accept");
    if accept != Some(derive_accept_key(key.as_bytes()).as_str()) {
        return Err(fail(format!("bad Sec-WebSocket-Accept {accept:?}")));
    }
    // Anything after the head is already WebSocket data.
    buf.drain(..head_len);
    let (r, w) = tcp.into_split();
    Ok((Reader::new(r, buf), Writer::new(w)))
}

fn upgrade_request(url: &Url, key: &str, auth: Option<&(String, String)>) -> String {
    let mut target = url.path().to_string();
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let mut req = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
    );
    if let Some((user, pass)) = auth {
        req.push_str(&format!("Authorization: Basic {}\r\n", B64.encode(format!("{user}:{pass}"))));
    }
    req.push_str("\r\n");
    req
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `HTTP/1.1 101 Switching Protocols` → 101.
fn parse_status(head: &str) -> Option<u16> {
    let line = head.lines().next()?;
    let mut parts = line.split_ascii_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

/// A header's value (first occurrence, name case-insensitive).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A message off the wire. Text is handed over as bytes: the caller decides how much of it to
/// validate (a media event's payload is checked by base64 decoding anyway).
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    Text(&'a [u8]),
    Binary(&'a [u8]),
    Close(Option<u16>, String),
    Ping(Vec<u8>),
    Pong,
}

enum Kind {
    /// In `msg`, or (a single unmasked frame) at this range of the read buffer.
    Text(Option<(usize, usize)>),
    Binary,
    Close(Option<u16>, String),
    Ping(Vec<u8>),
    Pong,
}

pub struct Reader {
    r: OwnedReadHalf,
    buf: Vec<u8>,
    /// Parsed up to here.
    pos: usize,
    /// The message handed out last (and the fragments of one being assembled).
    msg: Vec<u8>,
    /// The opcode of a fragmented message in progress.
    fragmented: Option<u8>,
}

impl Reader {
    fn new(r: OwnedReadHalf, leftover: Vec<u8>) -> Self {
        Self { r, buf: leftover, pos: 0, msg: Vec::new(), fragmented: None }
    }

    /// The next message; `Ok(None)` when the server closed the TCP connection.
    pub async fn next(&mut self) -> Result<Option<Event<'_>>, String> {
        let kind = loop {
            if let Some(kind) = parse(&self.buf, &mut self.pos, &mut self.msg, &mut self.fragmented)? {
                break kind;
            }
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            self.buf.reserve(READ_CHUNK);
            match self.r.read_buf(&mut self.buf).await {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        };
        Ok(Some(match kind {
            Kind::Text(Some((from, to))) => Event::Text(&self.buf[from..to]),
            Kind::Text(None) => Event::Text(&self.msg),
            Kind::Binary => Event::Binary(&self.msg),
            Kind::Close(code, reason) => Event::Close(code, reason),
            Kind::Ping(p) => Event::Ping(p),
            Kind::Pong => Event::Pong,
        }))
    }
}

/// Parses frames from `buf[*pos..]` until one completes a message (data lands in `msg`), or more
/// bytes are needed (`Ok(None)`).
fn parse(buf: &[u8], pos: &mut usize, msg: &mut Vec<u8>, fragmented: &mut Option<u8>) -> Result<Option<Kind>, String> {
    loop {
        let data = &buf[*pos..];
        if data.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (data[0], data[1]);
        if b0 & 0x70 != 0 {
            return Err("frame with RSV bits set (no extension was negotiated)".into());
        }
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0f;
        let masked = b1 & 0x80 != 0;
        let (mut head, len) = match b1 & 0x7f {
            126 if data.len() >= 4 => (4, usize::from(u16::from_be_bytes([data[2], data[3]]))),
            127 if data.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&data[2..10]);
                (10, usize::try_from(u64::from_be_bytes(n)).unwrap_or(usize::MAX))
            }
            126 | 127 => return Ok(None),
            n => (2, usize::from(n)),
        };
        let continued = if opcode == OP_CONT { msg.len() } else { 0 };
        if len.saturating_add(continued) > MAX_MESSAGE {
            return Err(format!("message over {MAX_MESSAGE} bytes"));
        }
        let mask = if masked {
            let Some(m) = data.get(head..head + 4) else { return Ok(None) };
            head += 4;
            Some([m[0], m[1], m[2], m[3]])
        } else {
            None
        };
        if data.len() < head + len {
            return Ok(None);
        }
        let payload = &data[head..head + len];
        *pos += head + len;
        // Servers must not mask; if one does, unmask rather than misread.
        let take = |out: &mut Vec<u8>| {
            let from = out.len();
            out.extend_from_slice(payload);
            if let Some(m) = mask {
                apply_mask(&mut out[from..], m);
            }
        };
        match opcode {
            OP_TEXT | OP_BINARY => {
                if fragmented.is_some() {
                    return Err("a new message started inside a fragmented one".into());
                }
                if fin && opcode == OP_TEXT && mask.is_none() {
                    // The common case: hand out the bytes where they lie.
                    let from = *pos - len;
                    return Ok(Some(Kind::Text(Some((from, *pos)))));
                }
                msg.clear();
                take(msg);
                if fin {
                    return Ok(Some(if opcode == OP_TEXT { Kind::Text(None) } else { Kind::Binary }));
                }
                *fragmented = Some(opcode);
            }
            OP_CONT => {
                let Some(first) = *fragmented else { return Err("continuation frame with nothing to continue".into()) };
                take(msg);
                if fin {
                    *fragmented = None;
                    return Ok(Some(if first == OP_TEXT { Kind::Text(None) } else { Kind::Binary }));
                }
            }
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin || len > 125 {
                    return Err("fragmented or oversized control frame".into());
                }
                let mut p = Vec::with_capacity(len);
                take(&mut p);
                return Ok(Some(match opcode {
                    OP_CLOSE => {
                        let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                        let reason = p.get(2..).map(|r| String::from_utf8_lossy(r).into_owned()).unwrap_or_default();
                        Kind::Close(code, reason)
                    }
                    OP_PING => Kind::Ping(p),
                    _ => Kind::Pong,
                }));
            }
            other => return Err(format!("unknown opcode {other:#x}")),
        }
    }
}

pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let m = u32::from_ne_bytes(mask);
    let mut words = buf.chunks_exact_mut(4);
    for w in &mut words {
        let v = u32::from_ne_bytes([w[0], w[1], w[2], w[3]]) ^ m;
        w.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

/// Room [`frame_in_place`] needs in front of a payload: the longest header plus the mask key.
pub const HEADROOM: usize = 14;

/// Turns `buf` = [`HEADROOM`] bytes of anything + payload into a masked frame, in place; the
/// frame is `buf[returned..]`.
pub fn frame_in_place(buf: &mut [u8], opcode: u8, mask: [u8; 4]) -> usize {
    let len = buf.len() - HEADROOM;
    apply_mask(&mut buf[HEADROOM..], mask);
    let mut head = [0u8; HEADROOM];
    let mut n = 0;
    head[n] = 0x80 | opcode;
    n += 1;
    match len {
        0..=125 => {
            head[n] = 0x80 | len as u8;
            n += 1;
        }
        126..=0xFFFF => {
            head[n] = 0x80 | 126;
            head[n + 1..n + 3].copy_from_slice(&(len as u16).to_be_bytes());
            n += 3;
        }
        _ => {
            head[n] = 0x80 | 127;
            head[n + 1..n + 9].copy_from_slice(&(len as u64).to_be_bytes());
            n += 9;
        }
    }
    head[n..n + 4].copy_from_slice(&mask);
    n += 4;
    let start = HEADROOM - n;
    buf[start..HEADROOM].copy_from_slice(&head[..n]);
    start
}

/// Appends one complete, masked frame to `out`.
pub fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    let from = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[from..], mask);
}

/// Cheap mask keys (xorshift64*); one generator per shard.
#[derive(Debug, Clone)]
pub struct MaskKeys(u64);

impl MaskKeys {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next_key(&mut self) -> [u8; 4] {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32).to_ne_bytes()
    }
}

/// The write half: whole frames go out with one non-blocking write; what the socket cannot take
/// waits in `pending`, in order, until [`Writer::retry`] gets it out.
pub struct Writer {
    w: OwnedWriteHalf,
    pending: Vec<u8>,
}

impl Writer {
    fn new(w: OwnedWriteHalf) -> Self {
        Self { w, pending: Vec::new() }
    }

    /// Writes one frame from `frame` (a complete encoded frame). `Ok(true)`: all of it is out.
    pub fn send(&mut self, frame: &[u8]) -> io::Result<bool> {
        if !self.pending.is_empty() {
            self.pending.extend_from_slice(frame);
            return self.retry();
        }
        match self.w.try_write(frame) {
            Ok(n) if n == frame.len() => Ok(true),
            Ok(n) => {
                self.pending.extend_from_slice(&frame[n..]);
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.pending.extend_from_slice(frame);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Pushes out what is pending; `Ok(true)` when nothing is left.
    pub fn retry(&mut self) -> io::Result<bool> {
        while !self.pending.is_empty() {
            match self.w.try_write(&self.pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, opcode, payload, [0; 4]);
        // A server's frame: same layout without the mask bit and key.
        out[0] = if fin { 0x80 | opcode } else { opcode };
        out[1] &= 0x7f;
        let key_at = match payload.len() {
            0..=125 => 2,
            126..=0xFFFF => 4,
            _ => 10,
        };
        out.drain(key_at..key_at + 4);
        out
    }

    fn parse_all(wire: &[u8]) -> Vec<String> {
        let (mut pos, mut msg, mut frag) = (0, Vec::new(), None);
        let mut out = Vec::new();
        // Feed byte by byte: every prefix must either parse or ask for more.
        for end in 0..=wire.len() {
            while let Some(k) = parse(&wire[..end], &mut pos, &mut msg, &mut frag).unwrap() {
                out.push(match k {
                    Kind::Text(Some((a, b))) => format!("text:{}", String::from_utf8_lossy(&wire[a..b])),
                    Kind::Text(None) => format!("text:{}", String::from_utf8_lossy(&msg)),
                    Kind::Binary => format!("binary:{}", msg.len()),
                    Kind::Close(c, r) => format!("close:{c:?}:{r}"),
                    Kind::Ping(p) => format!("ping:{}", p.len()),
                    Kind::Pong => "pong".into(),
                });
            }
        }
        out
    }

    #[test]
    fn frames_of_every_length_form_and_fragmentation() {
        let mut wire = server_frame(true, OP_TEXT, b"hi");
        wire.extend(server_frame(true, OP_BINARY, &[7; 300]));
        wire.extend(server_frame(true, OP_BINARY, &vec![1; 70_000]));
        wire.extend(server_frame(false, OP_TEXT, b"hel"));
        wire.extend(server_frame(true, OP_PING, b"p"));
        wire.extend(server_frame(false, OP_CONT, b"lo "));
        wire.extend(server_frame(true, OP_CONT, b"world"));
        wire.extend(server_frame(true, OP_PONG, b""));
        wire.extend(server_frame(true, OP_CLOSE, &[0x03, 0xE8, b'b', b'y', b'e']));
        wire.extend(server_frame(true, OP_CLOSE, b""));
        assert_eq!(
            parse_all(&wire),
            vec![
                "text:hi",
                "binary:300",
                "binary:70000",
                "ping:1",
                "text:hello world",
                "pong",
                "close:Some(1000):bye",
                "close:None:"
            ]
        );
    }

    #[test]
    fn client_frames_are_masked_and_unmask_back() {
        let mut keys = MaskKeys::new(42);
        let (k1, k2) = (keys.next_key(), keys.next_key());
        assert_ne!(k1, k2);
        for len in [0usize, 5, 125, 126, 560, 65_535, 65_536] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = Vec::new();
            encode_frame(&mut out, OP_TEXT, &payload, k1);
            assert_eq!(out[0], 0x81);
            assert!(out[1] & 0x80 != 0, "mask bit");
            // The parser accepts (and unmasks) a masked frame too.
            let (mut pos, mut msg, mut frag) = (0, Vec::new(), None);
            assert!(matches!(parse(&out, &mut pos, &mut msg, &mut frag), Ok(Some(Kind::Text(None)))));
            assert_eq!((pos, msg), (out.len(), payload.clone()), "{len}");
            // Framing in place gives the same bytes.
            let mut buf = vec![0xEE; HEADROOM];
            buf.extend_from_slice(&payload);
            let start = frame_in_place(&mut buf, OP_TEXT, k1);
            assert_eq!(&buf[start..], &out[..], "{len}");
        }
    }

    #[test]
    fn protocol_errors() {
        let bad = |wire: Vec<u8>| parse(&wire, &mut 0, &mut Vec::new(), &mut None).is_err();
        assert!(bad(vec![0xC1, 0x00]), "RSV bit");
        assert!(bad(server_frame(true, OP_CONT, b"x")), "continuation out of nowhere");
        assert!(bad(server_frame(false, OP_PING, b"x")), "fragmented control frame");
        assert!(bad(server_frame(true, 0x3, b"x")), "reserved opcode");
        let mut two_starts = server_frame(false, OP_TEXT, b"a");
        two_starts.extend(server_frame(true, OP_TEXT, b"b"));
        let (mut pos, mut msg, mut frag) = (0, Vec::new(), None);
        assert!(parse(&two_starts, &mut pos, &mut msg, &mut frag).is_err());
        assert!(bad(vec![0x82, 127, 0, 0, 0, 0, 0x10, 0, 0, 0]), "256 MiB frame");
    }

    #[test]
    fn handshake_pieces() {
        let url = Url::parse("ws://127.0.0.1:8765/media?a=1&sample-rate=16000").unwrap();
        let req = upgrade_request(&url, "dGhlIHNhbXBsZSBub25jZQ==", Some(&("u".into(), "p".into())));
        assert!(req.starts_with("GET /media?a=1&sample-rate=16000 HTTP/1.1\r\nHost: 127.0.0.1:8765\r\n"), "{req}");
        assert!(req.contains("Authorization: Basic dTpw\r\n") && req.ends_with("\r\n\r\n"));
        let head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: abc=\r\n\r\n";
        assert_eq!(parse_status(head), Some(101));
        assert_eq!(header(head, "sec-websocket-accept"), Some("abc="));
        assert_eq!(parse_status("SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
