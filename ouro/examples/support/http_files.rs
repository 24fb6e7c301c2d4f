//! The file server's HTTP/1.1 (`examples/file_server.rs`): what a request
//! head asks for, where its path leads under the root, and the head of an
//! answer. Nothing here touches a file or a socket.

use std::io::Write;
use std::path::{Path, PathBuf};

#[path = "http_connection.rs"]
mod http_connection;

/// What the start of a connection's input makes of it.
pub enum Parsed {
    /// Not whole yet.
    Partial,
    /// A request of `len` bytes.
    Get {
        len: usize,
        path: String,
        keep_alive: bool,
    },
    /// An answer to give, then close.
    Refused(u16, &'static str),
}

/// The file `path` (a request target) names under `root`; `None` if it
/// climbs out with a `..` segment. Empty and `.` segments inside the path
/// name nothing (`/a//b` and `/a/./b` are `/a/b`); a path that ends in one
/// (`/a/`, `/a/.`) names a directory, so it keeps a trailing `/`, with
/// which the kernel opens only a directory (a file is `ENOTDIR`).
pub fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut resolved = root.to_path_buf();
    let mut directory = false;
    for segment in path.split('/') {
        directory = matches!(segment, "" | ".");
        match segment {
            "" | "." => {}
            ".." => return None,
            _ => resolved.push(segment),
        }
    }
    if directory {
        // An empty component adds just the separator.
        resolved.push("");
    }
    Some(resolved)
}

/// Parses the request head at the start of `input`.
pub fn parse(input: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(input) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Refused(431, "Request Header Fields Too Large")
        }
        Err(_) => return Parsed::Refused(400, "Bad Request"),
    };
    let (Some(method), Some(path)) = (request.method, request.path) else {
        return Parsed::Refused(400, "Bad Request");
    };
    if method != "GET" {
        return Parsed::Refused(405, "Method Not Allowed");
    }
    if !path.starts_with('/') {
        return Parsed::Refused(400, "Bad Request");
    }
    for header in request.headers.iter() {
        let (name, value) = (header.name, header.value);
        if name.eq_ignore_ascii_case("transfer-encoding")
            || (name.eq_ignore_ascii_case("content-length") && value.trim_ascii() != b"0")
        {
            // A body the server would have to skip: not worth it for GET.
            return Parsed::Refused(400, "Bad Request");
        }
    }
    Parsed::Get {
        len,
        path: path.to_string(),
        keep_alive: http_connection::keep_alive(request.version, request.headers),
    }
}

/// An answer's head, for a body of `len` bytes.
pub fn head(code: u16, reason: &str, len: u64, keep_alive: bool) -> Vec<u8> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let allow = if code == 405 { "Allow: GET\r\n" } else { "" };
    let mut head = Vec::with_capacity(128);
    let _ = write!(
        head,
        "HTTP/1.1 {code} {reason}\r\nContent-Length: {len}\r\n{allow}Connection: {connection}\r\n\r\n"
    );
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_dot_segments_are_refused_and_dots_ignored() {
        let root = Path::new("/srv");
        assert_eq!(resolve(root, "/../etc/passwd"), None);
        assert_eq!(resolve(root, "/a/../../b"), None);
        assert_eq!(resolve(root, "/a/..?x"), None);
        assert_eq!(
            resolve(root, "/./a//b?q=1"),
            Some(PathBuf::from("/srv/a/b"))
        );
        assert_eq!(
            resolve(root, "/%2e%2e/x"),
            Some(PathBuf::from("/srv/%2e%2e/x"))
        );
    }

    #[test]
    fn a_path_that_ends_in_a_slash_names_a_directory() {
        let root = Path::new("/srv");
        for path in ["/a/", "/a//", "/a/.", "//a/./?q=1"] {
            let resolved = resolve(root, path).unwrap();
            assert_eq!(resolved.as_os_str(), "/srv/a/", "{path}");
        }
        assert_eq!(resolve(root, "/").unwrap().as_os_str(), "/srv/");
        assert_eq!(resolve(root, "/a").unwrap().as_os_str(), "/srv/a");
    }

    #[test]
    fn requests_are_parsed_or_refused() {
        let get = |input: &[u8]| match parse(input) {
            Parsed::Get {
                len,
                path,
                keep_alive,
            } => Some((len, path, keep_alive)),
            _ => None,
        };
        let req = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET";
        assert_eq!(get(req), Some((req.len() - 3, "/a".to_string(), true)));
        assert!(!get(b"GET /a HTTP/1.0\r\n\r\n").unwrap().2);
        let close = b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\n";
        assert!(!get(close).unwrap().2);
        let listed = b"GET /a HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n";
        assert!(!get(listed).unwrap().2);
        assert!(matches!(parse(b"GET /a HT"), Parsed::Partial));
        assert!(matches!(
            parse(b"POST / HTTP/1.1\r\n\r\n"),
            Parsed::Refused(405, _)
        ));
        let body = b"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
        assert!(matches!(parse(body), Parsed::Refused(400, _)));
        assert!(matches!(
            parse(b"\x00garbage\r\n\r\n"),
            Parsed::Refused(400, _)
        ));
    }
}
