//! A minimal HTTP/1.1 server over std sockets, one thread per connection. Hand-written rather
//! than tiny_http because the swallow fault must close a connection with no response at all,
//! and tiny_http answers 500 for any request dropped unanswered.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};

/// Bodies are small JSON documents; anything larger is refused rather than buffered.
const MAX_BODY: usize = 1 << 20;
const MAX_LINE: usize = 16 << 10;
const MAX_HEADERS: usize = 100;

pub struct Request {
    pub method: String,
    /// Path without the query string, as the JWT `uri` claim covers it.
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Query pairs in order; repeated keys stay repeated (`order_status=OPEN&order_status=FILLED`).
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect()
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

pub struct Response {
    pub status: u16,
    pub body: String,
    pub extra_headers: Vec<(&'static str, String)>,
}

impl Response {
    pub fn json(status: u16, v: &serde_json::Value) -> Response {
        Response { status, body: v.to_string(), extra_headers: Vec::new() }
    }
}

/// What a handler wants done with the connection.
pub enum Reply {
    Send(Response),
    /// Close the connection without a byte of response (the request's effects stand).
    Swallow,
    /// Hold the answer this long, then close as `Swallow` does.
    Stall(std::time::Duration),
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        _ => "Status",
    }
}

pub fn write_response(w: &mut impl Write, r: &Response, keep_alive: bool) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {}\r\n",
        r.status,
        reason(r.status),
        r.body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    for (k, v) in &r.extra_headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.write_all(r.body.as_bytes())?;
    w.flush()
}

fn read_line(r: &mut BufReader<TcpStream>) -> Result<Option<String>, String> {
    let mut buf = Vec::new();
    let n = r.by_ref().take(MAX_LINE as u64).read_until(b'\n', &mut buf).map_err(|e| e.to_string())?;
    if n == 0 {
        return Ok(None);
    }
    if !buf.ends_with(b"\n") {
        return Err("header line too long".into());
    }
    let s = String::from_utf8(buf).map_err(|_| "header is not UTF-8")?;
    Ok(Some(s.trim_end_matches(['\r', '\n']).to_string()))
}

/// Reads one request; `Ok(None)` when the peer closed the connection between requests.
pub fn read_request(r: &mut BufReader<TcpStream>) -> Result<Option<Request>, String> {
    let line = loop {
        match read_line(r)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue, // tolerate stray CRLF between requests
            Some(l) => break l,
        }
    };
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(_version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("bad request line {line:?}"));
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    loop {
        let l = read_line(r)?.ok_or("connection closed inside headers")?;
        if l.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err("too many headers".into());
        }
        let (k, v) = l.split_once(':').ok_or("malformed header")?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut req = Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: Vec::new(),
    };
    let chunked = req.header("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    if chunked {
        req.body = read_chunked(r)?;
        return Ok(Some(req));
    }
    let len: usize = match req.header("content-length") {
        Some(v) => v.parse().map_err(|_| "bad Content-Length")?,
        None => 0,
    };
    if len > MAX_BODY {
        return Err("request body too large".into());
    }
    req.body = vec![0; len];
    r.read_exact(&mut req.body).map_err(|e| e.to_string())?;
    Ok(Some(req))
}

/// Some clients stream JSON bodies chunked rather than with a Content-Length.
fn read_chunked(r: &mut BufReader<TcpStream>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r)?.ok_or("connection closed inside a chunked body")?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| "bad chunk size")?;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            while !read_line(r)?.ok_or("connection closed in trailers")?.is_empty() {}
            return Ok(body);
        }
        if size > MAX_BODY - body.len() {
            return Err("request body too large".into());
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..]).map_err(|e| e.to_string())?;
        read_line(r)?; // the CRLF after each chunk
    }
}

/// Closes abruptly: no response, no lingering half-open socket.
pub fn slam(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Both);
}
