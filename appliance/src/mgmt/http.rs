//! The management plane's HTTP/1.1 request parser: a pure function over the bytes received
//! so far on one connection (fuzzed by `appliance/fuzz`, target `http_request`).
//!
//! Only what a metrics endpoint needs: a request line `METHOD SP /target SP HTTP/1.x`, header
//! lines `name: value`, no body (a `Content-Length` other than 0 or any `Transfer-Encoding`
//! is refused). Keep-alive follows HTTP/1.1 (on unless `Connection: close`) and HTTP/1.0
//! (off unless `Connection: keep-alive`).

/// Most bytes a request head may take (request line and headers).
pub const MAX_HEAD: usize = 2048;

/// The request method, as far as the server cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// Any other well-formed method token (answered 405).
    Other,
}

/// One complete, well-formed request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method.
    pub method: Method,
    /// The path, without any `?query`.
    pub path: &'a str,
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
    /// Bytes of the input this request took (the next request starts there).
    pub len: usize,
}

/// Why a request is malformed (answered 400, then the connection is closed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// The head is longer than [`MAX_HEAD`] bytes.
    TooLong,
    /// The request line is not `METHOD SP /target SP HTTP/1.x`.
    BadRequestLine,
    /// The version is not HTTP/1.0 or HTTP/1.1.
    BadVersion,
    /// A header line is not `token: value`, or holds a control character.
    BadHeader,
    /// The request has a body (`Content-Length` not 0, or `Transfer-Encoding`).
    Body,
    /// A byte that is not printable ASCII where the grammar allows none.
    NotText,
}

impl HttpError {
    /// A short reason, sent as the 400 answer's body.
    pub const fn reason(self) -> &'static str {
        match self {
            HttpError::TooLong => "request head too long",
            HttpError::BadRequestLine => "malformed request line",
            HttpError::BadVersion => "unsupported HTTP version",
            HttpError::BadHeader => "malformed header",
            HttpError::Body => "request bodies are not accepted",
            HttpError::NotText => "non-text byte in request",
        }
    }
}

/// What the bytes received so far hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Not a whole head yet: wait for more bytes.
    Partial,
    /// A whole request.
    Complete(Request<'a>),
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(start, |e| e + 1);
    s.get(start..end.max(start)).unwrap_or(&[])
}

/// Whether comma-separated header value `v` holds `token` (case-insensitive).
fn has_token(v: &[u8], token: &[u8]) -> bool {
    v.split(|b| *b == b',')
        .any(|t| trim(t).eq_ignore_ascii_case(token))
}

/// Parses the request head at the start of `buf`.
///
/// Never panics, whatever `buf` holds; `Ok(Partial)` only while no `\r\n\r\n` (or `\n\n`) was
/// seen and the buffer is below [`MAX_HEAD`].
pub fn parse(buf: &[u8]) -> Result<Parsed<'_>, HttpError> {
    // Leading empty lines before a request line are allowed (RFC 9112 §2.2).
    let mut start = 0;
    while let Some(b) = buf.get(start) {
        if *b == b'\r' || *b == b'\n' {
            start += 1;
        } else {
            break;
        }
    }
    let window = &buf[start.min(buf.len())..];
    let Some(end) = head_end(window) else {
        return if buf.len() >= MAX_HEAD {
            Err(HttpError::TooLong)
        } else {
            Ok(Parsed::Partial)
        };
    };
    if start + end > MAX_HEAD {
        return Err(HttpError::TooLong);
    }
    let head = &window[..end];
    let mut lines = head
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = lines.next().unwrap_or(&[]);
    let mut parts = line.split(|b| *b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadRequestLine);
    };
    if method.is_empty() || !method.iter().all(|b| is_tchar(*b)) {
        return Err(HttpError::BadRequestLine);
    }
    if target.first() != Some(&b'/') || !target.iter().all(|b| b.is_ascii_graphic()) {
        return Err(HttpError::BadRequestLine);
    }
    let mut keep_alive = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        v if v.starts_with(b"HTTP/") => return Err(HttpError::BadVersion),
        _ => return Err(HttpError::BadRequestLine),
    };
    let http10 = !keep_alive;
    for h in lines {
        if h.is_empty() {
            continue;
        }
        let colon = h
            .iter()
            .position(|b| *b == b':')
            .ok_or(HttpError::BadHeader)?;
        let (name, value) = (&h[..colon], &h[colon + 1..]);
        if name.is_empty() || !name.iter().all(|b| is_tchar(*b)) {
            return Err(HttpError::BadHeader);
        }
        if value
            .iter()
            .any(|b| (*b < 0x20 && *b != b'\t') || *b == 0x7f)
        {
            return Err(HttpError::BadHeader);
        }
        let value = trim(value);
        if name.eq_ignore_ascii_case(b"connection") {
            if has_token(value, b"close") {
                keep_alive = false;
            } else if http10 && has_token(value, b"keep-alive") {
                keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            if value.is_empty() || !value.iter().all(|b| *b == b'0') {
                return Err(HttpError::Body);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err(HttpError::Body);
        }
    }
    let path_bytes = target.split(|b| *b == b'?').next().unwrap_or(target);
    let path = core::str::from_utf8(path_bytes).map_err(|_| HttpError::NotText)?;
    let method = match method {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        _ => Method::Other,
    };
    Ok(Parsed::Complete(Request {
        method,
        path,
        keep_alive,
        len: start + end + terminator_len(&window[end..]),
    }))
}

/// What the fuzz target (`appliance/fuzz`, `http_request`) and the corpus replay check for
/// any input, fed as a connection would (request after request): no panic; a complete
/// request takes at least one byte and no more than the input and [`MAX_HEAD`] + 2; its path
/// starts with `/` and holds no query; `Partial` only below [`MAX_HEAD`] bytes.
pub fn check_invariants(data: &[u8]) {
    let mut rest = data;
    // Bounded: every round consumes at least one byte.
    for _ in 0..=data.len() {
        match parse(rest) {
            Ok(Parsed::Partial) => {
                assert!(rest.len() < MAX_HEAD, "partial at {} bytes", rest.len());
                return;
            }
            Ok(Parsed::Complete(r)) => {
                assert!(
                    r.len > 0 && r.len <= rest.len(),
                    "len {} of {}",
                    r.len,
                    rest.len()
                );
                assert!(r.len <= MAX_HEAD + 2, "head of {} bytes accepted", r.len);
                assert!(r.path.starts_with('/'), "path {:?}", r.path);
                assert!(!r.path.contains('?'), "query left in {:?}", r.path);
                rest = &rest[r.len..];
            }
            Err(_) => return,
        }
    }
    panic!("parse consumed nothing");
}

/// Where the head ends in `buf` (the index of its blank line's terminator), if it does.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            // "\n\n" or "\n\r\n" ends the head.
            match buf.get(i + 1) {
                Some(b'\n') => return Some(i + 1),
                Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => return Some(i + 1),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// Length of the blank line at the start of `rest` ("\n" or "\r\n").
fn terminator_len(rest: &[u8]) -> usize {
    if rest.first() == Some(&b'\r') {
        2
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Request<'_> {
        match parse(s.as_bytes()) {
            Ok(Parsed::Complete(r)) => r,
            other => panic!("{s:?}: {other:?}"),
        }
    }

    #[test]
    fn prometheus_scrape_is_a_keep_alive_get() {
        let s = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9100\r\nUser-Agent: Prometheus/2.45.3\r\nAccept: text/plain;version=0.0.4;q=1,*/*;q=0.1\r\nAccept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n";
        let r = ok(s);
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path, "/metrics");
        assert!(r.keep_alive);
        assert_eq!(r.len, s.len());
    }

    #[test]
    fn pipelined_requests_are_taken_one_at_a_time() {
        let s =
            "GET /a HTTP/1.1\r\n\r\nHEAD /metrics?x=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
        let a = ok(s);
        assert_eq!((a.path, a.len), ("/a", 19));
        let b = ok(&s[a.len..]);
        assert_eq!(
            (b.method, b.path, b.keep_alive),
            (Method::Head, "/metrics", true)
        );
        assert_eq!(a.len + b.len, s.len());
    }

    #[test]
    fn connection_header_and_version_decide_keep_alive() {
        assert!(!ok("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").keep_alive);
        assert!(!ok("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(ok("GET / HTTP/1.1\r\nConnection: foo, keep-alive\r\n\r\n").keep_alive);
        assert!(!ok("GET / HTTP/1.1\r\nconnection: upgrade, close\r\n\r\n").keep_alive);
        // Bare LF line ends and leading empty lines.
        let r = ok("\r\nGET /x HTTP/1.1\nHost: h\n\n");
        assert_eq!((r.path, r.len), ("/x", 27));
    }

    #[test]
    fn other_methods_parse_and_are_named_other() {
        assert_eq!(ok("POST /metrics HTTP/1.1\r\n\r\n").method, Method::Other);
        assert_eq!(
            ok("GET /m HTTP/1.1\r\nContent-Length: 0\r\n\r\n").method,
            Method::Get
        );
    }

    #[test]
    fn incomplete_heads_wait() {
        assert_eq!(parse(b""), Ok(Parsed::Partial));
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\n"), Ok(Parsed::Partial));
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r"),
            Ok(Parsed::Partial)
        );
    }

    #[test]
    fn malformed_requests_are_named() {
        let e = |s: &[u8]| parse(s).unwrap_err();
        assert_eq!(e(b"GARBAGE\r\n\r\n"), HttpError::BadRequestLine);
        assert_eq!(e(b"GET  /x HTTP/1.1\r\n\r\n"), HttpError::BadRequestLine);
        assert_eq!(e(b"GET x HTTP/1.1\r\n\r\n"), HttpError::BadRequestLine);
        assert_eq!(
            e(b"GET /x HTTP/1.1 extra\r\n\r\n"),
            HttpError::BadRequestLine
        );
        assert_eq!(e(b"G(T /x HTTP/1.1\r\n\r\n"), HttpError::BadRequestLine);
        assert_eq!(e(b"GET /x HTTP/2.0\r\n\r\n"), HttpError::BadVersion);
        assert_eq!(e(b"GET /x FTP/1.1\r\n\r\n"), HttpError::BadRequestLine);
        assert_eq!(
            e(b"GET /x HTTP/1.1\r\nno colon\r\n\r\n"),
            HttpError::BadHeader
        );
        assert_eq!(
            e(b"GET /x HTTP/1.1\r\n: empty\r\n\r\n"),
            HttpError::BadHeader
        );
        assert_eq!(
            e(b"GET /x HTTP/1.1\r\nA: b\x01c\r\n\r\n"),
            HttpError::BadHeader
        );
        assert_eq!(
            e(b"GET /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"),
            HttpError::Body
        );
        assert_eq!(
            e(b"GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            HttpError::Body
        );
        assert_eq!(e(b"GET /\xff HTTP/1.1\r\n\r\n"), HttpError::BadRequestLine);
        let long = [b'a'; MAX_HEAD];
        assert_eq!(e(&long), HttpError::TooLong);
        let mut long_head = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long_head.extend_from_slice(&[b'a'; MAX_HEAD]);
        long_head.extend_from_slice(b"\r\n\r\n");
        assert_eq!(e(&long_head), HttpError::TooLong);
    }

    #[test]
    fn invariants_hold_for_the_examples() {
        check_invariants(b"GET /a HTTP/1.1\r\n\r\nGET /b?c HTTP/1.1\r\n\r\nGET /c");
        check_invariants(b"\r\n\r\n\r\n");
        check_invariants(b"");
        check_invariants(&[b'\n'; MAX_HEAD + 10]);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap sweep of short inputs over the bytes that steer the parser.
        let alphabet = b"GET /\r\n:HTP1.0c";
        let mut buf = [0u8; 6];
        for n in 0..alphabet.len().pow(4) {
            let mut k = n;
            for b in buf.iter_mut() {
                *b = alphabet[k % alphabet.len()];
                k /= alphabet.len();
            }
            if let Ok(Parsed::Complete(r)) = parse(&buf) {
                assert!(r.len <= buf.len());
            }
        }
    }
}
