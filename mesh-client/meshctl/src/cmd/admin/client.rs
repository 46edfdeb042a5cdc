//! A small blocking HTTP/1.1 client for a workload's admin endpoint: one GET per connection,
//! with connect and read timeouts, `Content-Length` and chunked bodies.

use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    time::Duration,
};

use crate::error::Error;

/// How long connecting and each read may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// An admin endpoint address, as given on the command line.
#[derive(Debug, Clone)]
pub(crate) struct AdminAddr {
    /// As typed, for messages.
    pub(crate) shown: String,
    addrs: Vec<SocketAddr>,
    host: String,
}

impl AdminAddr {
    /// Parses `ADDR`: `host:port`, optionally with `http://` and a trailing `/`.
    pub(crate) fn parse(value: &str) -> Result<Self, Error> {
        let bare = value
            .strip_prefix("http://")
            .unwrap_or(value)
            .trim_end_matches('/');
        let invalid = |reason: String| Error::InvalidArg {
            flag: "ADDR",
            value: value.to_owned(),
            reason,
        };
        if bare.starts_with("https://") || bare.contains('/') {
            return Err(invalid(
                "give the admin endpoint as host:port, such as 127.0.0.1:15020".to_owned(),
            ));
        }
        let addrs: Vec<SocketAddr> = bare
            .to_socket_addrs()
            .map_err(|e| {
                invalid(format!(
                    "{e}; give the admin endpoint as host:port, such as 127.0.0.1:15020"
                ))
            })?
            .collect();
        if addrs.is_empty() {
            return Err(invalid("the name resolves to no address".to_owned()));
        }
        Ok(Self {
            shown: bare.to_owned(),
            addrs,
            host: bare.to_owned(),
        })
    }

    /// GETs `path`: the status and the body as text.
    pub(crate) fn get(&self, path: &str) -> Result<(u16, String), Error> {
        let fail = |reason: String| Error::Admin {
            addr: self.shown.clone(),
            reason,
        };
        let mut last = None;
        let mut tcp = None;
        for addr in &self.addrs {
            match TcpStream::connect_timeout(addr, TIMEOUT) {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let mut tcp = tcp.ok_or_else(|| {
            fail(format!(
                "cannot connect: {}; is the workload running with an admin endpoint (admin: {{ listen: ... }})?",
                last.map_or_else(|| "no address".to_owned(), |e| e.to_string())
            ))
        })?;
        tcp.set_read_timeout(Some(TIMEOUT))
            .and_then(|()| tcp.set_write_timeout(Some(TIMEOUT)))
            .map_err(|e| fail(e.to_string()))?;
        write!(
            tcp,
            "GET {path} HTTP/1.1\r\nhost: {}\r\nuser-agent: meshctl\r\naccept: */*\r\nconnection: close\r\n\r\n",
            self.host
        )
        .map_err(|e| fail(format!("cannot send the request: {e}")))?;
        read_response(BufReader::new(tcp)).map_err(|reason| fail(format!("{path}: {reason}")))
    }
}

/// Reads one HTTP/1.1 response.
fn read_response(mut reader: impl BufRead) -> Result<(u16, String), String> {
    let mut line = String::new();
    let io = |e: std::io::Error| format!("reading the answer failed: {e}");
    reader.read_line(&mut line).map_err(io)?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", line.trim_end()))?;
    let mut length = None;
    let mut chunked = false;
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(io)? == 0 {
            return Err("the answer ended inside its headers".to_owned());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).map_err(io)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| format!("bad chunk size {:?}", line.trim()))?;
            if size == 0 {
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..]).map_err(io)?;
            line.clear();
            reader.read_line(&mut line).map_err(io)?;
        }
    } else if let Some(length) = length {
        body.resize(length, 0);
        reader.read_exact(&mut body).map_err(io)?;
    } else {
        reader.read_to_end(&mut body).map_err(io)?;
    }
    String::from_utf8(body)
        .map(|text| (status, text))
        .map_err(|_| "the answer is not UTF-8 text".to_owned())
}

/// One sample of Prometheus text.
#[derive(Debug)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) value: f64,
}

impl Sample {
    /// The value of label `name`, if present.
    pub(crate) fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the sample lines of Prometheus text; lines it cannot read are skipped.
pub(crate) fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse() else {
            continue;
        };
        let (name, mut rest) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').unwrap_or(rest)),
            None => (series, ""),
        };
        let mut labels = Vec::new();
        while let Some((key, after)) = rest.split_once("=\"") {
            let mut value = String::new();
            let mut chars = after.char_indices();
            let mut end = after.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(if escaped == 'n' { '\n' } else { escaped });
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            labels.push((key.trim_start_matches(',').to_owned(), value));
            rest = &after[end..];
        }
        out.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_length_and_chunked_bodies() {
        let fixed = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(
            read_response(fixed.as_bytes()).unwrap(),
            (200, "hello".into())
        );
        let chunked = "HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(
            read_response(chunked.as_bytes()).unwrap(),
            (503, "abcde".into())
        );
        assert!(read_response("garbage".as_bytes()).is_err());
    }

    #[test]
    fn parses_samples_with_escapes() {
        let text = "# TYPE x counter\nx_total{a=\"1\",b=\"q\\\"uote\"} 3\nup 1\n";
        let s = samples(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].label("b"), Some("q\"uote"));
        assert_eq!(s[0].value, 3.0);
        assert_eq!(s[1].name, "up");
    }

    #[test]
    fn addresses_are_host_and_port() {
        assert!(AdminAddr::parse("127.0.0.1:15020").is_ok());
        assert!(AdminAddr::parse("http://127.0.0.1:15020/").is_ok());
        assert!(AdminAddr::parse("127.0.0.1").is_err());
        assert!(AdminAddr::parse("http://127.0.0.1:15020/metrics").is_err());
    }
}
