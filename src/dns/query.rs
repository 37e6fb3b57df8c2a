//! A minimal DNS client (one A query over UDP) so `status` can ask node DNS the way a pod
//! would, without shelling out to dig.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Addresses(Vec<Ipv4Addr>),
    /// NXDOMAIN, or no A record: the server answered, the name has no address.
    NoAddress,
    /// Any other response code (SERVFAIL, REFUSED ...).
    Failure(u8),
}

pub fn query_a(server: SocketAddr, name: &str, timeout: Duration) -> io::Result<Answer> {
    let id = (std::process::id() as u16) ^ 0x5a5a;
    let packet = encode_query(id, name)?;
    let socket = UdpSocket::bind(if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
    socket.set_read_timeout(Some(timeout))?;
    socket.connect(server)?;
    socket.send(&packet)?;
    let mut buf = [0u8; 1500];
    loop {
        let len = socket.recv(&mut buf)?;
        if let Some(answer) = decode_answer(id, &buf[..len]) {
            return Ok(answer);
        }
    }
}

fn encode_query(id: u16, name: &str) -> io::Result<Vec<u8>> {
    let mut packet = Vec::with_capacity(32 + name.len());
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad DNS name {name:?}")));
        }
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.extend_from_slice(&[0, 0, 1, 0, 1]); // root; type A; class IN
    Ok(packet)
}

/// `None` when the packet is not the response to our query.
fn decode_answer(id: u16, packet: &[u8]) -> Option<Answer> {
    if packet.len() < 12 || packet[..2] != id.to_be_bytes() || packet[2] & 0x80 == 0 {
        return None;
    }
    let rcode = packet[3] & 0x0f;
    let questions = u16::from_be_bytes([packet[4], packet[5]]);
    let answers = u16::from_be_bytes([packet[6], packet[7]]);
    match rcode {
        0 => {}
        3 => return Some(Answer::NoAddress),
        other => return Some(Answer::Failure(other)),
    }
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(packet, at)? + 4;
    }
    let mut addresses = Vec::new();
    for _ in 0..answers {
        at = skip_name(packet, at)?;
        let header = packet.get(at..at + 10)?;
        let rtype = u16::from_be_bytes([header[0], header[1]]);
        let rdlen = usize::from(u16::from_be_bytes([header[8], header[9]]));
        let rdata = packet.get(at + 10..at + 10 + rdlen)?;
        if rtype == 1 && rdlen == 4 {
            addresses.push(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]));
        }
        at += 10 + rdlen;
    }
    Some(if addresses.is_empty() { Answer::NoAddress } else { Answer::Addresses(addresses) })
}

/// Skips a (possibly compressed) name; returns the offset after it.
fn skip_name(packet: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *packet.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_query() {
        let q = encode_query(0x1234, "web-0.default").unwrap();
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..], b"\x05web-0\x07default\x00\x00\x01\x00\x01");
        assert!(encode_query(1, "a..b").is_err());
    }

    #[test]
    fn decodes_answers_with_compression() {
        let mut response = encode_query(7, "web").unwrap();
        response[2] = 0x81;
        response[3] = 0x80;
        response[7] = 1; // one answer
        response.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 172, 38, 0, 3]);
        assert_eq!(decode_answer(7, &response), Some(Answer::Addresses(vec![Ipv4Addr::new(172, 38, 0, 3)])));
        assert_eq!(decode_answer(8, &response), None, "another query's response");
        response[3] = 0x83;
        assert_eq!(decode_answer(7, &response), Some(Answer::NoAddress));
        response[3] = 0x82;
        assert_eq!(decode_answer(7, &response), Some(Answer::Failure(2)));
        assert_eq!(decode_answer(7, &response[..20]), Some(Answer::Failure(2)));
    }
}
