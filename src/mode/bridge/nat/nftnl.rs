//! nf_tables over netlink, just what hostPorts need: read a table's comment, see that a chain
//! or a map exists, dump a map's elements, and add/delete elements in one atomic batch that is
//! refused when the ruleset changed since it was read. No crate speaks nf_tables without C
//! libraries or `nft` itself, so the few messages are written here; constants are the kernel
//! uapi's (include/uapi/linux/netfilter/nfnetlink.h and nf_tables.h).

use netlink_packet_core::NlasIterator;
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use std::io;

// nfnetlink.h
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10; // NLMSG_MIN_TYPE
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_BATCH_GENID: u16 = 1;
// nf_tables.h: enum nf_tables_msg_types
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_GETSET: u16 = 10;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFT_MSG_GETGEN: u16 = 16;
// enum nft_table_attributes, nft_chain_attributes, nft_set_attributes
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_USERDATA: u16 = 6;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_DATA_LEN: u16 = 7;
// enum nft_set_elem_list_attributes, nft_list_attributes, nft_set_elem_attributes, nft_data_attributes
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_USERDATA: u16 = 6;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_GEN_ID: u16 = 1;
/// libnftnl's udata TLV types (include/udata.h): what `nft` shows as `comment "..."`.
const NFTNL_UDATA_COMMENT: u8 = 0;
/// NFT_USERDATA_MAXLEN: the whole userdata attribute, TLV header and NUL included.
pub const USERDATA_MAX: usize = 256;

const NFPROTO_IPV4: u8 = 2;
const NLA_F_NESTED: u16 = 0x8000;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const HEADER: usize = 16 + 4; // nlmsghdr + nfgenmsg

/// One element of a map: key and data as the kernel stores them, and its comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub key: Vec<u8>,
    pub data: Vec<u8>,
    pub comment: Option<String>,
}

/// One change in a batch.
pub enum Op<'a> {
    /// NEWSETELEM with NLM_F_EXCL: an existing key fails the whole batch with EEXIST.
    Add { set: &'a str, elements: &'a [Element] },
    /// DELSETELEM: a missing key fails the whole batch with ENOENT.
    Delete { set: &'a str, elements: &'a [Element] },
}

/// A NETLINK_NETFILTER socket bound to the caller's network namespace.
pub struct Nft {
    socket: Socket,
    seq: u32,
}

impl Nft {
    pub fn open() -> io::Result<Nft> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Nft { socket, seq: 0 })
    }

    /// The ruleset generation; a batch that carries it fails with ERESTART if any commit
    /// (ours or anyone's) came in between.
    pub fn generation(&mut self) -> io::Result<u32> {
        let replies = self.get(NFT_MSG_GETGEN, 0, libc::AF_UNSPEC as u8, &[])?;
        replies
            .iter()
            .find_map(|payload| attr(payload, NFTA_GEN_ID).and_then(be32))
            .ok_or_else(|| invalid("NEWGEN without NFTA_GEN_ID"))
    }

    /// The table's comment; NotFound when there is no such `ip` table.
    pub fn table_comment(&mut self, table: &str) -> io::Result<Option<String>> {
        let mut msg = Vec::new();
        put_str(&mut msg, NFTA_TABLE_NAME, table);
        let replies = self.get(NFT_MSG_GETTABLE, 0, NFPROTO_IPV4, &msg)?;
        Ok(replies.iter().find_map(|p| attr(p, NFTA_TABLE_USERDATA)).and_then(comment_of))
    }

    pub fn chain_exists(&mut self, table: &str, chain: &str) -> io::Result<()> {
        let mut msg = Vec::new();
        put_str(&mut msg, NFTA_CHAIN_TABLE, table);
        put_str(&mut msg, NFTA_CHAIN_NAME, chain);
        self.get(NFT_MSG_GETCHAIN, 0, NFPROTO_IPV4, &msg).map(drop)
    }

    /// Key and data length of a set or map, to see that it is the one we expect.
    pub fn set_lengths(&mut self, table: &str, set: &str) -> io::Result<(u32, u32)> {
        let mut msg = Vec::new();
        put_str(&mut msg, NFTA_SET_TABLE, table);
        put_str(&mut msg, NFTA_SET_NAME, set);
        let replies = self.get(NFT_MSG_GETSET, 0, NFPROTO_IPV4, &msg)?;
        let payload = replies.first().ok_or_else(|| invalid("no NEWSET reply"))?;
        let len = |kind| attr(payload, kind).and_then(be32).unwrap_or(0);
        Ok((len(NFTA_SET_KEY_LEN), len(NFTA_SET_DATA_LEN)))
    }

    /// Every element of a map (a dump); NotFound when the table or the map is missing.
    pub fn elements(&mut self, table: &str, set: &str) -> io::Result<Vec<Element>> {
        let mut msg = Vec::new();
        put_str(&mut msg, NFTA_SET_ELEM_LIST_TABLE, table);
        put_str(&mut msg, NFTA_SET_ELEM_LIST_SET, set);
        let replies = self.get(NFT_MSG_GETSETELEM, libc::NLM_F_DUMP as u16, NFPROTO_IPV4, &msg)?;
        let mut out = Vec::new();
        for payload in &replies {
            let Some(list) = attr(payload, NFTA_SET_ELEM_LIST_ELEMENTS) else { continue };
            for item in NlasIterator::new(list).flatten().filter(|a| a.kind() & !NLA_F_NESTED == NFTA_LIST_ELEM) {
                let elem = item.value();
                let value = |kind| attr(elem, kind).and_then(|d| attr(d, NFTA_DATA_VALUE)).map(<[u8]>::to_vec);
                out.push(Element {
                    key: value(NFTA_SET_ELEM_KEY).unwrap_or_default(),
                    data: value(NFTA_SET_ELEM_DATA).unwrap_or_default(),
                    comment: attr(elem, NFTA_SET_ELEM_USERDATA).and_then(comment_of),
                });
            }
        }
        Ok(out)
    }

    /// Applies every op in one transaction, all or nothing. ERESTART: the ruleset changed
    /// since `generation` (read again and retry); EEXIST/ENOENT as in `Op`.
    pub fn commit(&mut self, generation: u32, table: &str, ops: &[Op]) -> io::Result<()> {
        let mut buf = Vec::new();
        let begin = self.next_seq();
        let mut genid = Vec::new();
        put(&mut genid, NFNL_BATCH_GENID, &generation.to_be_bytes());
        // The batch messages carry the subsystem in nfgenmsg.res_id.
        message(&mut buf, NFNL_MSG_BATCH_BEGIN, 0, begin, libc::AF_UNSPEC as u8, NFNL_SUBSYS_NFTABLES, &genid);
        let mut acked = Vec::new();
        for op in ops {
            let (kind, flags, set, elements) = match op {
                Op::Add { set, elements } => (NFT_MSG_NEWSETELEM, libc::NLM_F_CREATE | libc::NLM_F_EXCL, set, elements),
                Op::Delete { set, elements } => (NFT_MSG_DELSETELEM, 0, set, elements),
            };
            if elements.is_empty() {
                continue;
            }
            let mut attrs = Vec::new();
            put_str(&mut attrs, NFTA_SET_ELEM_LIST_TABLE, table);
            put_str(&mut attrs, NFTA_SET_ELEM_LIST_SET, set);
            let list = nest_start(&mut attrs, NFTA_SET_ELEM_LIST_ELEMENTS);
            for element in elements.iter() {
                let item = nest_start(&mut attrs, NFTA_LIST_ELEM);
                put_value(&mut attrs, NFTA_SET_ELEM_KEY, &element.key);
                if matches!(op, Op::Add { .. }) {
                    put_value(&mut attrs, NFTA_SET_ELEM_DATA, &element.data);
                    if let Some(comment) = &element.comment {
                        put(&mut attrs, NFTA_SET_ELEM_USERDATA, &userdata(comment)?);
                    }
                }
                nest_end(&mut attrs, item);
            }
            nest_end(&mut attrs, list);
            let seq = self.next_seq();
            let flags = (flags | libc::NLM_F_ACK) as u16;
            message(&mut buf, nft_type(kind), flags, seq, NFPROTO_IPV4, 0, &attrs);
            acked.push(seq);
        }
        if acked.is_empty() {
            return Ok(());
        }
        message(&mut buf, NFNL_MSG_BATCH_END, 0, self.next_seq(), libc::AF_UNSPEC as u8, NFNL_SUBSYS_NFTABLES, &[]);
        self.socket.send(&buf, 0)?;
        // The kernel runs a batch inside sendmsg, so every answer is queued by now (as `nft`
        // itself relies on): read without blocking until the queue is empty.
        let mut first_error = None;
        let mut answered = 0;
        let mut rx = Vec::with_capacity(64 * 1024);
        loop {
            rx.clear();
            match self.socket.recv(&mut rx, libc::MSG_DONTWAIT) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
            for (kind, seq, payload) in messages(&rx)? {
                if kind != NLMSG_ERROR || !(begin..=begin + acked.len() as u32 + 1).contains(&seq) {
                    continue;
                }
                match errno(payload)? {
                    0 => answered += 1,
                    e => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        match first_error {
            Some(e) => Err(io::Error::from_raw_os_error(e)),
            None if answered == acked.len() => Ok(()),
            None => Err(invalid("the kernel did not acknowledge every message of the batch")),
        }
    }

    /// Closes the socket on a thread of its own. After a batch that deleted elements the
    /// kernel frees them after an RCU grace period, and closing an nf_tables socket waits
    /// for that (NETLINK_URELEASE flushes the destroy work): 7-15 ms here. Closed aside, the
    /// wait overlaps the caller's next steps (DEL deletes the veth next).
    pub fn close_aside(self) {
        // Should the thread not start, the closure and the socket are dropped right here.
        let _ = std::thread::Builder::new().name("nft-close".into()).spawn(move || drop(self));
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// One request (a GET, or a dump with NLM_F_DUMP); the payloads of its replies after
    /// nfgenmsg. A kernel error comes back as the errno (ENOENT → NotFound).
    fn get(&mut self, kind: u16, flags: u16, family: u8, attrs: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        let seq = self.next_seq();
        let dump = flags & libc::NLM_F_DUMP as u16 != 0;
        let flags = if dump { flags } else { flags | libc::NLM_F_ACK as u16 };
        let mut buf = Vec::new();
        message(&mut buf, nft_type(kind), flags, seq, family, 0, attrs);
        self.socket.send(&buf, 0)?;
        let mut replies = Vec::new();
        loop {
            let (rx, _) = self.socket.recv_from_full()?;
            for (kind, rseq, payload) in messages(&rx)? {
                if rseq != seq {
                    continue;
                }
                match kind {
                    NLMSG_ERROR | NLMSG_DONE => {
                        return match errno(payload)? {
                            0 => Ok(replies),
                            e => Err(io::Error::from_raw_os_error(e)),
                        };
                    }
                    _ if payload.len() >= 4 => replies.push(payload[4..].to_vec()),
                    _ => return Err(invalid("short nf_tables reply")),
                }
            }
        }
    }
}

fn nft_type(kind: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | kind
}

/// Appends nlmsghdr + nfgenmsg + attributes.
fn message(buf: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, family: u8, res_id: u16, attrs: &[u8]) {
    let len = (HEADER + attrs.len()) as u32;
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&(flags | libc::NLM_F_REQUEST as u16).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    buf.extend_from_slice(&[family, 0 /* NFNETLINK_V0 */]);
    buf.extend_from_slice(&res_id.to_be_bytes());
    buf.extend_from_slice(attrs);
}

/// The netlink messages in one datagram: (type, seq, payload).
fn messages(rx: &[u8]) -> io::Result<Vec<(u16, u32, &[u8])>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= rx.len() {
        let word = |o: usize| u32::from_ne_bytes(rx[at + o..at + o + 4].try_into().unwrap());
        let len = word(0) as usize;
        if len < 16 || at + len > rx.len() {
            return Err(invalid("truncated netlink message"));
        }
        let kind = u16::from_ne_bytes([rx[at + 4], rx[at + 5]]);
        out.push((kind, word(8), &rx[at + 16..at + len]));
        at += (len + 3) & !3;
    }
    Ok(out)
}

/// The errno of an NLMSG_ERROR (0 = ack) or NLMSG_DONE payload, positive.
fn errno(payload: &[u8]) -> io::Result<i32> {
    let raw = payload.get(..4).ok_or_else(|| invalid("short netlink error"))?;
    Ok(-i32::from_ne_bytes(raw.try_into().unwrap()))
}

/// The first attribute of that type in an attribute stream (nested flag ignored).
fn attr(stream: &[u8], kind: u16) -> Option<&[u8]> {
    NlasIterator::new(stream).flatten().find(|a| a.kind() & !NLA_F_NESTED == kind).map(|a| {
        let value: &[u8] = a.into_inner();
        &value[4..a.length() as usize]
    })
}

fn be32(value: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(value.get(..4)?.try_into().ok()?))
}

fn put(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    buf.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize((buf.len() + 3) & !3, 0);
}

/// A NUL-terminated string attribute (NLA_STRING, as nft sends names).
fn put_str(buf: &mut Vec<u8>, kind: u16, value: &str) {
    let mut bytes = value.as_bytes().to_vec();
    bytes.push(0);
    put(buf, kind, &bytes);
}

/// A `struct nft_data` attribute: a nest holding NFTA_DATA_VALUE.
fn put_value(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let nest = nest_start(buf, kind);
    put(buf, NFTA_DATA_VALUE, value);
    nest_end(buf, nest);
}

fn nest_start(buf: &mut Vec<u8>, kind: u16) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    at
}

fn nest_end(buf: &mut [u8], at: usize) {
    let len = (buf.len() - at) as u16;
    buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
}

/// Userdata holding one comment TLV, as `nft ... comment "x"` writes it.
fn userdata(comment: &str) -> io::Result<Vec<u8>> {
    if comment.len() + 3 > USERDATA_MAX || comment.contains('\0') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "nftables comment too long"));
    }
    let mut out = vec![NFTNL_UDATA_COMMENT, comment.len() as u8 + 1];
    out.extend_from_slice(comment.as_bytes());
    out.push(0);
    Ok(out)
}

/// The comment TLV in a userdata blob, if any.
fn comment_of(udata: &[u8]) -> Option<String> {
    let mut rest = udata;
    while let [kind, len, tail @ ..] = rest {
        let value = tail.get(..*len as usize)?;
        if *kind == NFTNL_UDATA_COMMENT {
            let text = value.strip_suffix(&[0]).unwrap_or(value);
            return String::from_utf8(text.to_vec()).ok();
        }
        rest = &tail[*len as usize..];
    }
    None
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_round_trip_through_userdata() {
        let udata = userdata("abc iot/holder-0").unwrap();
        assert_eq!(&udata[..2], &[0, 17]);
        assert_eq!(comment_of(&udata).as_deref(), Some("abc iot/holder-0"));
        // A flags TLV first (type 1), as nft may write for other elements.
        let mut other = vec![1, 4, 0, 0, 0, 0];
        other.extend_from_slice(&udata);
        assert_eq!(comment_of(&other).as_deref(), Some("abc iot/holder-0"));
        assert_eq!(comment_of(&[0, 9, b'x']), None, "truncated");
        assert!(userdata(&"x".repeat(253)).is_ok());
        assert!(userdata(&"x".repeat(254)).is_err());
    }

    #[test]
    fn messages_are_framed_and_attributes_aligned() {
        let mut attrs = Vec::new();
        put_str(&mut attrs, NFTA_SET_ELEM_LIST_TABLE, "t");
        let nest = nest_start(&mut attrs, NFTA_SET_ELEM_LIST_ELEMENTS);
        put(&mut attrs, NFTA_DATA_VALUE, &[6, 0, 0, 0, 0x1f, 0x90, 0, 0]);
        nest_end(&mut attrs, nest);
        assert_eq!(attrs.len(), 8 + 4 + 12);
        assert_eq!(attr(&attrs, NFTA_SET_ELEM_LIST_TABLE), Some(&b"t\0"[..]));
        let key = attr(&attrs, NFTA_SET_ELEM_LIST_ELEMENTS).unwrap();
        assert_eq!(attr(key, NFTA_DATA_VALUE), Some(&[6, 0, 0, 0, 0x1f, 0x90, 0, 0][..]));
        let mut buf = Vec::new();
        message(&mut buf, nft_type(NFT_MSG_NEWSETELEM), 0, 7, NFPROTO_IPV4, 0, &attrs);
        message(&mut buf, NFNL_MSG_BATCH_END, 0, 8, 0, NFNL_SUBSYS_NFTABLES, &[]);
        let parsed = messages(&buf).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!((parsed[0].0, parsed[0].1), (0x0a0c, 7));
        assert_eq!(&parsed[0].2[4..], &attrs[..]);
        assert_eq!(&parsed[1].2[2..4], &[0, 10], "res_id is big-endian");
    }
}
