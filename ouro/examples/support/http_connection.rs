//! The `Connection` header of an HTTP/1.x request, shared by the HTTP
//! examples (`http_server.rs`, and `file_server.rs` through
//! `http_files.rs`).

/// Whether the connection stays open after the answer to a request of
/// HTTP/1.`minor` with `headers`. Each `Connection` header is a
/// comma-separated list of case-insensitive options (RFC 9110 §7.6.1), and
/// a request may carry several: `close` in any of them closes; otherwise
/// HTTP/1.1 keeps the connection, and HTTP/1.0 keeps it only if one names
/// `keep-alive`. Options the server does not know are ignored.
pub fn keep_alive(minor: Option<u8>, headers: &[httparse::Header]) -> bool {
    let (mut close, mut keep) = (false, false);
    let connection = headers
        .iter()
        .filter(|header| header.name.eq_ignore_ascii_case("connection"));
    for header in connection {
        for option in header.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            close |= option.eq_ignore_ascii_case(b"close");
            keep |= option.eq_ignore_ascii_case(b"keep-alive");
        }
    }
    !close && (minor == Some(1) || keep)
}

#[cfg(test)]
mod tests {
    use super::keep_alive;

    fn connection(values: &[&'static str]) -> Vec<httparse::Header<'static>> {
        let header = |value: &&'static str| httparse::Header {
            name: "Connection",
            value: value.as_bytes(),
        };
        values.iter().map(header).collect()
    }

    #[test]
    fn close_anywhere_in_any_connection_header_closes() {
        for values in [
            &["close"][..],
            &["keep-alive, close"],
            &["Upgrade ,CLOSE , foo"],
            &["keep-alive", "close"],
            &["close", "keep-alive"],
        ] {
            let headers = connection(values);
            assert!(!keep_alive(Some(1), &headers), "{values:?}");
            assert!(!keep_alive(Some(0), &headers), "{values:?}");
        }
    }

    #[test]
    fn each_version_keeps_its_default_unless_told() {
        assert!(keep_alive(Some(1), &[]));
        assert!(keep_alive(Some(1), &connection(&["upgrade, closed"])));
        assert!(!keep_alive(Some(0), &[]));
        assert!(!keep_alive(Some(0), &connection(&["keep-alives"])));
        assert!(keep_alive(Some(0), &connection(&["foo, Keep-Alive"])));
    }
}
