//! A client that speaks raw RESP and asserts exact reply bytes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::WAIT;

/// A client that speaks raw RESP and asserts exact replies.
pub struct Client {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client { stream, reader }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn send_command(&mut self, args: &[&[u8]]) {
        let bytes = encode(args);
        self.send(&bytes);
    }

    /// Sends a command and returns its whole reply as raw RESP text.
    pub fn call(&mut self, args: &[&str]) -> String {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.send_command(&args);
        self.read_reply()
    }

    pub fn auth_ok(&mut self, dsn: &str) {
        assert_eq!(self.call(&["AUTH", dsn]), "+OK\r\n");
    }

    /// Reads one complete reply (any type, nested arrays included) as raw text.
    pub fn read_reply(&mut self) -> String {
        let mut out = String::new();
        self.read_into(&mut out);
        out
    }

    /// Like `read_reply`, but None when the server closed the connection.
    pub fn try_read_reply(&mut self) -> Option<String> {
        let buffered = self
            .reader
            .fill_buf()
            .map(|b| !b.is_empty())
            .unwrap_or(false);
        buffered.then(|| self.read_reply())
    }

    fn read_into(&mut self, out: &mut String) {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("reply within WAIT");
        assert!(
            n > 0,
            "connection closed while a reply was expected (so far: {out:?})"
        );
        out.push_str(&line);
        let body = line.trim_end();
        match body.as_bytes().first() {
            Some(b'$') => {
                let len: i64 = body[1..].parse().unwrap();
                if len >= 0 {
                    let mut data = vec![0; len as usize + 2];
                    self.reader.read_exact(&mut data).unwrap();
                    out.push_str(&String::from_utf8_lossy(&data));
                }
            }
            Some(b'*') => {
                let len: i64 = body[1..].parse().unwrap();
                for _ in 0..len.max(0) {
                    self.read_into(out);
                }
            }
            // RESP3 map: key and value per entry.
            Some(b'%') => {
                let len: i64 = body[1..].parse().unwrap();
                for _ in 0..len.max(0) * 2 {
                    self.read_into(out);
                }
            }
            _ => {}
        }
    }

    /// Sends `MGET [encoding]` and returns the bulk strings of the array reply,
    /// byte for byte.
    pub fn mget(&mut self, encoding: &str) -> Vec<Vec<u8>> {
        self.try_mget(encoding)
            .unwrap_or_else(|line| panic!("MGET answered {line:?}"))
    }

    /// Like [`Client::mget`], but a reply that is not an array comes back as
    /// `Err(first line)`.
    pub fn try_mget(&mut self, encoding: &str) -> Result<Vec<Vec<u8>>, String> {
        self.send_command(&[b"MGET", encoding.as_bytes()]);
        self.read_mget()
    }

    /// Reads the reply of an MGET sent earlier, like [`Client::try_mget`].
    pub fn read_mget(&mut self) -> Result<Vec<Vec<u8>>, String> {
        let mut header = String::new();
        self.reader
            .read_line(&mut header)
            .expect("MGET reply within WAIT");
        if !header.starts_with('*') {
            return Err(header);
        }
        let count: usize = header[1..].trim_end().parse().unwrap();
        Ok((0..count)
            .map(|_| {
                let mut line = String::new();
                self.reader.read_line(&mut line).unwrap();
                assert!(line.starts_with('$'), "{line:?}");
                let len: usize = line[1..].trim_end().parse().unwrap();
                let mut data = vec![0; len + 2];
                self.reader.read_exact(&mut data).unwrap();
                data.truncate(len);
                data
            })
            .collect())
    }

    /// Asserts that the server closes the connection (EOF) with nothing more sent.
    pub fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(
                rest.is_empty(),
                "unexpected bytes before close: {:?}",
                String::from_utf8_lossy(&rest)
            ),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("connection not closed: {e}"),
        }
    }
}

pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// One `CLIENT LIST` line as `field → value`.
pub type ClientLine = std::collections::BTreeMap<String, String>;

impl Client {
    /// `CLIENT LIST`, each line split into its `key=value` fields.
    pub fn client_list(&mut self) -> Vec<ClientLine> {
        let reply = self.call(&["CLIENT", "LIST"]);
        let (header, body) = reply
            .split_once("\r\n")
            .unwrap_or_else(|| panic!("CLIENT LIST answered {reply:?}"));
        assert!(header.starts_with('$'), "CLIENT LIST answered {reply:?}");
        body.trim_end_matches("\r\n")
            .lines()
            .map(|line| {
                line.split(' ')
                    .map(|field| {
                        let (k, v) = field
                            .split_once('=')
                            .unwrap_or_else(|| panic!("{field:?} in {line:?}"));
                        (k.to_owned(), v.to_owned())
                    })
                    .collect()
            })
            .collect()
    }
}
