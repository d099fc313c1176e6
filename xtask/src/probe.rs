//! Readiness probes that talk to the real brokers: HTTP, Kafka ApiVersions and Pulsar CONNECT.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

/// How long [`http_get`] and [`http_put`] wait for an answer.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET url` with a short timeout; returns the status code and the body.
pub fn http_get(url: &str) -> Result<(u16, String)> {
    http(ureq::http::Method::GET, url, HTTP_TIMEOUT)
}

/// `GET url` waiting at most `timeout`; returns the status code and the body.
pub fn http_get_timeout(url: &str, timeout: Duration) -> Result<(u16, String)> {
    http(ureq::http::Method::GET, url, timeout)
}

/// `PUT url` with an empty body, waiting at most `timeout`; returns the status code and the body.
pub fn http_put_timeout(url: &str, timeout: Duration) -> Result<(u16, String)> {
    http(ureq::http::Method::PUT, url, timeout)
}

/// `PUT url` with an empty body; returns the status code and the body.
pub fn http_put(url: &str) -> Result<(u16, String)> {
    http(ureq::http::Method::PUT, url, HTTP_TIMEOUT)
}

/// `POST url` with the JSON `body`; returns the status code and the body of the answer.
pub fn http_post_json(url: &str, body: &str) -> Result<(u16, String)> {
    send(ureq::http::Method::POST, url, HTTP_TIMEOUT, body.to_owned())
}

fn http(method: ureq::http::Method, url: &str, timeout: Duration) -> Result<(u16, String)> {
    send(method, url, timeout, String::new())
}

fn send(
    method: ureq::http::Method,
    url: &str,
    timeout: Duration,
    body: String,
) -> Result<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    if !body.is_empty() {
        request = request.header("content-type", "application/json");
    }
    let request = request.body(body).context("building request")?;
    let mut response = agent
        .run(request)
        .with_context(|| format!("requesting {url}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading the answer of {url}"))?;
    Ok((status, body))
}

fn connect(addr: &str, timeout: Duration) -> Result<TcpStream> {
    let sockets: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .collect();
    let socket = sockets
        .first()
        .with_context(|| format!("{addr} resolves to no address"))?;
    let stream = TcpStream::connect_timeout(socket, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .context("setting a read timeout")?;
    stream
        .set_write_timeout(Some(timeout))
        .context("setting a write timeout")?;
    Ok(stream)
}

fn read_frame(stream: &mut TcpStream, what: &str) -> Result<Vec<u8>> {
    let mut len = [0u8; 4];
    stream
        .read_exact(&mut len)
        .with_context(|| format!("reading the {what} length"))?;
    let len = u32::from_be_bytes(len) as usize;
    ensure!(len <= 1 << 20, "{what} of {len} bytes is implausibly large");
    let mut frame = vec![0u8; len];
    stream
        .read_exact(&mut frame)
        .with_context(|| format!("reading the {what}"))?;
    Ok(frame)
}

/// One entry of a Kafka ApiVersions answer: API key and supported version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiVersion {
    /// Kafka API key (e.g. 0 = Produce, 18 = ApiVersions).
    pub api_key: i16,
    /// Oldest supported version.
    pub min: i16,
    /// Newest supported version.
    pub max: i16,
}

/// Sends a Kafka ApiVersions v0 request to `addr` (`host:port`) and returns the broker's API list.
pub fn kafka_api_versions(addr: &str, timeout: Duration) -> Result<Vec<ApiVersion>> {
    const API_VERSIONS: i16 = 18;
    const CORRELATION_ID: i32 = 0x0b3e_7000;
    let client_id = b"bento-xtask";
    let mut body = Vec::new();
    body.extend_from_slice(&API_VERSIONS.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&CORRELATION_ID.to_be_bytes());
    body.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    body.extend_from_slice(client_id);
    let mut stream = connect(addr, timeout)?;
    stream
        .write_all(&(body.len() as u32).to_be_bytes())
        .context("sending ApiVersions")?;
    stream.write_all(&body).context("sending ApiVersions")?;
    let frame = read_frame(&mut stream, "ApiVersions response")?;
    let mut r = Reader {
        buf: &frame,
        pos: 0,
    };
    ensure!(
        r.i32()? == CORRELATION_ID,
        "ApiVersions answer has a foreign correlation id"
    );
    let error = r.i16()?;
    ensure!(
        error == 0,
        "ApiVersions answered with Kafka error code {error}"
    );
    let count = r.i32()?;
    ensure!(
        (0..=1000).contains(&count),
        "ApiVersions answer lists {count} APIs"
    );
    (0..count)
        .map(|_| {
            Ok(ApiVersion {
                api_key: r.i16()?,
                min: r.i16()?,
                max: r.i16()?,
            })
        })
        .collect()
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self
            .buf
            .get(self.pos..self.pos + N)
            .context("answer ends too early")?;
        self.pos += N;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }
    fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.take()?))
    }
}

/// Sends a Pulsar binary-protocol CONNECT to `addr` (`host:port`) and expects CONNECTED.
///
/// Returns the server version string the broker reports.
pub fn pulsar_connect(addr: &str, timeout: Duration) -> Result<String> {
    const CONNECT: u64 = 2;
    const CONNECTED: u64 = 3;
    const PROTOCOL_VERSION: u64 = 21;
    // CommandConnect { client_version = 1 (string); protocol_version = 4 (int32) }
    let mut connect_cmd = Vec::new();
    put_bytes(&mut connect_cmd, 1, b"bento-xtask");
    put_varint_field(&mut connect_cmd, 4, PROTOCOL_VERSION);
    // BaseCommand { type = 1 (enum); connect = 2 (message) }
    let mut base = Vec::new();
    put_varint_field(&mut base, 1, CONNECT);
    put_bytes(&mut base, 2, &connect_cmd);
    let mut frame = Vec::new();
    frame.extend_from_slice(&(base.len() as u32 + 4).to_be_bytes());
    frame.extend_from_slice(&(base.len() as u32).to_be_bytes());
    frame.extend_from_slice(&base);
    let mut stream = connect(addr, timeout)?;
    stream.write_all(&frame).context("sending CONNECT")?;
    let answer = read_frame(&mut stream, "Pulsar answer")?;
    let command = answer.get(4..).context("Pulsar answer without a command")?;
    let fields = proto_fields(command)?;
    let kind = fields
        .iter()
        .find(|f| f.0 == 1)
        .and_then(|f| f.1)
        .context("Pulsar answer without a type")?;
    if kind != CONNECTED {
        bail!("Pulsar answered CONNECT with command type {kind} instead of CONNECTED");
    }
    // CommandConnected { server_version = 1 (string) } is field 3 of BaseCommand.
    let connected = fields
        .iter()
        .find(|f| f.0 == 3)
        .map(|f| f.2.clone())
        .unwrap_or_default();
    let server = proto_fields(&connected)?
        .into_iter()
        .find(|f| f.0 == 1)
        .map(|f| f.2)
        .unwrap_or_default();
    Ok(String::from_utf8_lossy(&server).into_owned())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    put_varint(out, field << 3);
    put_varint(out, v);
}

fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Top-level protobuf fields: (number, varint value, length-delimited bytes).
type Field = (u64, Option<u64>, Vec<u8>);

fn proto_fields(buf: &[u8]) -> Result<Vec<Field>> {
    fn varint(buf: &[u8], pos: &mut usize) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *buf.get(*pos).context("truncated varint")?;
            *pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        bail!("varint too long")
    }
    let mut pos = 0;
    let mut fields = Vec::new();
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        match key & 7 {
            0 => fields.push((key >> 3, Some(varint(buf, &mut pos)?), Vec::new())),
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).context("length out of range")?;
                let bytes = buf.get(pos..pos + len).context("truncated field")?;
                fields.push((key >> 3, None, bytes.to_vec()));
                pos += len;
            }
            1 => pos += 8,
            5 => pos += 4,
            other => bail!("unsupported protobuf wire type {other}"),
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protobuf_round_trip() -> Result<()> {
        let mut buf = Vec::new();
        put_varint_field(&mut buf, 1, 300);
        put_bytes(&mut buf, 2, b"hi");
        let fields = proto_fields(&buf)?;
        assert_eq!(
            fields,
            vec![(1, Some(300), Vec::new()), (2, None, b"hi".to_vec())]
        );
        Ok(())
    }
}
