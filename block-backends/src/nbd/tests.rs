//! Unit tests of the NBD client against an in-process fake server.

use std::io::{self, IoSlice, Write};

use scsi_emu::BlockError;

use super::connection::{reply_error, request_header};
use super::protocol::*;
use super::*;

#[test]
fn addresses_parse_and_print() {
    let cases = [
        (
            "unix:/tmp/a.sock",
            NbdAddress::Unix {
                path: "/tmp/a.sock".into(),
            },
        ),
        (
            "/tmp/b.sock",
            NbdAddress::Unix {
                path: "/tmp/b.sock".into(),
            },
        ),
        (
            "example.org:1234",
            NbdAddress::Tcp {
                host: "example.org".into(),
                port: 1234,
            },
        ),
        (
            "example.org",
            NbdAddress::Tcp {
                host: "example.org".into(),
                port: 10809,
            },
        ),
        (
            "[::1]:99",
            NbdAddress::Tcp {
                host: "::1".into(),
                port: 99,
            },
        ),
        (
            "[::1]",
            NbdAddress::Tcp {
                host: "::1".into(),
                port: 10809,
            },
        ),
        (
            "fe80::1",
            NbdAddress::Tcp {
                host: "fe80::1".into(),
                port: 10809,
            },
        ),
    ];
    for (text, address) in cases {
        assert_eq!(text.parse::<NbdAddress>(), Ok(address.clone()), "{text}");
        // Display round-trips.
        assert_eq!(
            address.to_string().parse::<NbdAddress>(),
            Ok(address),
            "{text}"
        );
    }
    for bad in [
        "",
        "unix:",
        ":80",
        "host:",
        "host:port",
        "[::1",
        "[::1]x",
        "h:70000",
    ] {
        assert!(bad.parse::<NbdAddress>().is_err(), "{bad:?} parsed");
    }
}

#[test]
fn request_header_layout() {
    let h = request_header(
        CMD_WRITE,
        CMD_FLAG_FUA,
        0x0102_0304_0506_0708,
        0x200,
        0x1000,
    );
    assert_eq!(&h[0..4], &[0x25, 0x60, 0x95, 0x13]);
    assert_eq!(&h[4..6], &[0, 1]);
    assert_eq!(&h[6..8], &[0, 1]);
    assert_eq!(&h[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(&h[16..24], &[0, 0, 0, 0, 0, 0, 2, 0]);
    assert_eq!(&h[24..28], &[0, 0, 0x10, 0]);
}

#[test]
fn reply_errors_map_to_block_errors() {
    assert_eq!(reply_error(1), BlockError::ReadOnly);
    assert_eq!(reply_error(30), BlockError::ReadOnly);
    assert_eq!(reply_error(28), BlockError::NoSpace);
    assert_eq!(reply_error(12), BlockError::Busy);
    assert_eq!(reply_error(95), BlockError::Unsupported);
    assert_eq!(reply_error(5), BlockError::Io(5));
    assert_eq!(reply_error(22), BlockError::Io(22));
    assert_eq!(reply_error(u32::MAX), BlockError::Io(5));
}

#[test]
fn vectored_write_survives_short_writes() {
    // A writer that takes at most 3 bytes per call.
    struct Trickle(Vec<u8>);
    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(3);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut out = Trickle(Vec::new());
    let (a, b) = ([1u8, 2, 3, 4, 5], [6u8, 7, 8, 9]);
    let mut bufs = [IoSlice::new(&a), IoSlice::new(&[]), IoSlice::new(&b)];
    write_all_vectored(&mut out, &mut bufs).unwrap();
    assert_eq!(out.0, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
}
