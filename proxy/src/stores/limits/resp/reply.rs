//! What Redis answers: as much of RESP2 as it sends, read whole or not at all.

/// Why a call got no answer, or what Redis answered instead.
#[derive(Debug)]
pub enum Error {
    /// The connection broke or closed (or was already broken): it is of no further use.
    Broken,
    /// The bytes from Redis are not RESP2: the connection is out of step and of no further use.
    Protocol,
    /// Redis answered an error (`-NOSCRIPT ...`, `-READONLY ...`): the whole line.
    Reply(String),
    /// No answer by the call's deadline (it may still come, and is then thrown away).
    Timeout,
}

impl Error {
    /// Whether the connection cannot serve further calls.
    pub fn is_broken(&self) -> bool {
        match self {
            Self::Broken | Self::Protocol => true,
            Self::Timeout => false,
            Self::Reply(_) => matches!(self.code(), Some("READONLY" | "MASTERDOWN" | "LOADING")),
        }
    }

    /// What it was, for a log line: the error reply's code, never its text.
    pub fn label(&self) -> &str {
        match self {
            Self::Broken => "broken",
            Self::Protocol => "protocol",
            Self::Timeout => "timeout",
            Self::Reply(_) => self.code().unwrap_or("error"),
        }
    }

    /// The error reply's code (its first word).
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Reply(line) => line.split(' ').next(),
            _ => None,
        }
    }
}

/// An answer, as much of RESP2 as Redis sends.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Int(i64),
    Simple(String),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// As redis-rs's value, for its `FromRedisValue` conversions.
    pub fn into_value(self) -> redis::Value {
        match self {
            Self::Int(n) => redis::Value::Int(n),
            Self::Simple(text) if text == "OK" => redis::Value::Okay,
            Self::Simple(text) => redis::Value::SimpleString(text),
            Self::Bulk(Some(bytes)) => redis::Value::BulkString(bytes),
            Self::Array(Some(items)) => {
                redis::Value::Array(items.into_iter().map(Self::into_value).collect())
            }
            Self::Bulk(None) | Self::Array(None) => redis::Value::Nil,
        }
    }
}

/// What a call's answer is read as, straight from the reply for the integers the store's
/// scripts answer (a reply of another shape goes through redis-rs's `FromRedisValue`, as
/// before): no copy into redis-rs's values first.
pub trait FromReply: redis::FromRedisValue {
    fn from_reply(reply: &Reply) -> Option<Self>;
}

impl FromReply for i64 {
    fn from_reply(reply: &Reply) -> Option<Self> {
        match reply {
            Reply::Int(n) => Some(*n),
            _ => None,
        }
    }
}

/// An array of integers, held inline up to 16: the admission's answer (one, then three per
/// check, at most four checks) needs no allocation.
#[derive(Debug, PartialEq)]
pub struct Integers(pub smallvec::SmallVec<[i64; 16]>);

impl std::ops::Deref for Integers {
    type Target = [i64];
    fn deref(&self) -> &[i64] {
        &self.0
    }
}

impl redis::FromRedisValue for Integers {
    fn from_redis_value(value: redis::Value) -> Result<Self, redis::ParsingError> {
        Vec::<i64>::from_redis_value(value).map(|v| Self(v.into()))
    }
}

impl FromReply for Integers {
    fn from_reply(reply: &Reply) -> Option<Self> {
        match reply {
            Reply::Array(Some(items)) => items
                .iter()
                .map(i64::from_reply)
                .collect::<Option<_>>()
                .map(Self),
            _ => None,
        }
    }
}

/// An answer read whole (an error reply as `Err(Error::Reply)`), and the bytes it took.
pub type Parsed = (Result<Reply, Error>, usize);

/// Parses one whole answer from the front of `input`: `Ok(None)` while it is incomplete;
/// `Err` when the bytes are not RESP2.
pub fn parse(input: &[u8]) -> Result<Option<Parsed>, Error> {
    let mut at = 0;
    match parse_at(input, &mut at, 0)? {
        Some(reply) => Ok(Some((reply, at))),
        None => Ok(None),
    }
}

/// Deepest nesting of arrays read (Redis's scripts answer flat arrays).
const MAX_DEPTH: usize = 8;
/// Largest element count or bulk length believed (a wrong length would make a huge buffer).
const MAX_LENGTH: i64 = 64 * 1024 * 1024;

fn parse_at(
    input: &[u8],
    at: &mut usize,
    depth: usize,
) -> Result<Option<Result<Reply, Error>>, Error> {
    let Some(line) = line_at(input, *at)? else {
        return Ok(None);
    };
    let (kind, rest) = (line[0], &line[1..]);
    let after = *at + line.len() + 2;
    let text = || std::str::from_utf8(rest).map_err(|_| Error::Protocol);
    let number = || integer(rest).ok_or(Error::Protocol);
    let reply = match kind {
        b'+' => Ok(Reply::Simple(text()?.to_owned())),
        b'-' => Err(Error::Reply(text()?.to_owned())),
        b':' => Ok(Reply::Int(number()?)),
        b'$' => {
            let length = number()?;
            if length < 0 {
                Ok(Reply::Bulk(None))
            } else {
                if length > MAX_LENGTH {
                    return Err(Error::Protocol);
                }
                let length = usize::try_from(length).map_err(|_| Error::Protocol)?;
                let end = after + length;
                if input.len() < end + 2 {
                    return Ok(None);
                }
                if &input[end..end + 2] != b"\r\n" {
                    return Err(Error::Protocol);
                }
                *at = end + 2;
                return Ok(Some(Ok(Reply::Bulk(Some(input[after..end].to_vec())))));
            }
        }
        b'*' => {
            let count = number()?;
            if count < 0 {
                Ok(Reply::Array(None))
            } else {
                if count > MAX_LENGTH || depth >= MAX_DEPTH {
                    return Err(Error::Protocol);
                }
                *at = after;
                let mut items = Vec::with_capacity(usize::try_from(count.min(64)).unwrap_or(0));
                let mut failed = None;
                for _ in 0..count {
                    match parse_at(input, at, depth + 1)? {
                        None => return Ok(None),
                        Some(Ok(item)) => items.push(item),
                        // An error inside an array (a transaction's answer): the first one.
                        Some(Err(error)) => failed = failed.or(Some(error)),
                    }
                }
                return Ok(Some(match failed {
                    Some(error) => Err(error),
                    None => Ok(Reply::Array(Some(items))),
                }));
            }
        }
        _ => return Err(Error::Protocol),
    };
    *at = after;
    Ok(Some(reply))
}

/// A decimal integer as `i64`'s `FromStr` reads one (an optional sign, then digits), from the
/// bytes themselves: no UTF-8 check and `str` parse per element of an answer.
fn integer(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return None;
    }
    // Counted below zero, so that `i64::MIN` fits.
    let mut value: i64 = 0;
    for &byte in digits {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        value = value.checked_mul(10)?.checked_sub(i64::from(digit))?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

/// Bytes of a line scanned one by one before `memchr` takes over.
const SHORT_LINE: usize = 24;

/// The line starting at `at`, without its CRLF; `None` while it has not all come.
fn line_at(input: &[u8], at: usize) -> Result<Option<&[u8]>, Error> {
    let rest = input.get(at..).unwrap_or_default();
    // Most lines are short (an integer, a length): a plain scan of them costs less than
    // `memchr`'s set-up.
    let short = rest.len().min(SHORT_LINE);
    let end = match rest[..short].iter().position(|&b| b == b'\n') {
        Some(end) => Some(end),
        None => memchr::memchr(b'\n', &rest[short..]).map(|end| end + short),
    };
    match end {
        None if rest.len() > 64 * 1024 => Err(Error::Protocol),
        None => Ok(None),
        Some(end) if end >= 2 && rest[end - 1] == b'\r' => Ok(Some(&rest[..end - 1])),
        Some(_) => Err(Error::Protocol),
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Integers are read exactly as `i64`'s `FromStr` reads them, whatever the bytes.
        #[test]
        fn integers_read_as_from_str_does(text in "[-+]{0,2}[0-9]{0,21}|[-+0-9a ]{0,6}", n in any::<i64>()) {
            prop_assert_eq!(integer(text.as_bytes()), text.parse::<i64>().ok());
            let written = n.to_string();
            prop_assert_eq!(integer(written.as_bytes()), Some(n));
        }
    }

    /// RESP2 values as Redis writes them.
    fn reply() -> impl Strategy<Value = Reply> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Reply::Int),
            "[a-zA-Z0-9 ]{0,12}".prop_map(Reply::Simple),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..24))
                .prop_map(Reply::Bulk),
            Just(Reply::Array(None)),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            proptest::collection::vec(inner, 0..6).prop_map(|items| Reply::Array(Some(items)))
        })
    }

    fn encode(reply: &Reply, out: &mut Vec<u8>) {
        match reply {
            Reply::Int(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Reply::Simple(text) => out.extend_from_slice(format!("+{text}\r\n").as_bytes()),
            Reply::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
            Reply::Bulk(Some(bytes)) => {
                out.extend_from_slice(format!("${}\r\n", bytes.len()).as_bytes());
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Array(None) => out.extend_from_slice(b"*-1\r\n"),
            Reply::Array(Some(items)) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for item in items {
                    encode(item, out);
                }
            }
        }
    }

    proptest! {
        /// What we read is what redis-rs reads, whole or not at all: every proper prefix is
        /// incomplete, and the bytes after an answer are left for the next one.
        #[test]
        fn answers_read_as_redis_rs_reads_them(reply in reply()) {
            let mut bytes = Vec::new();
            encode(&reply, &mut bytes);
            let (ours, used) = parse(&bytes).unwrap().unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(ours.unwrap().into_value(), redis::parse_redis_value(&bytes).unwrap());
            for cut in 0..bytes.len() {
                prop_assert!(parse(&bytes[..cut]).unwrap().is_none(), "prefix {cut} read whole");
            }
            bytes.extend_from_slice(b":7\r\n");
            prop_assert_eq!(parse(&bytes).unwrap().unwrap().1, used);
        }
    }

    proptest! {
        /// An answer read straight as the store's integers is what redis-rs makes of it.
        #[test]
        fn integers_read_straight_are_redis_rs_conversions(
            reply in reply(),
            ints in proptest::collection::vec(any::<i64>(), 0..24),
        ) {
            let all_ints = Reply::Array(Some(ints.iter().copied().map(Reply::Int).collect()));
            prop_assert_eq!(Integers::from_reply(&all_ints), Some(Integers(ints.into())));
            if let Some(ours) = Integers::from_reply(&reply) {
                let theirs: Vec<i64> = redis::FromRedisValue::from_redis_value(reply.into_value()).unwrap();
                prop_assert_eq!(&ours[..], &theirs[..]);
            } else if let Some(ours) = i64::from_reply(&reply) {
                let theirs: i64 = redis::FromRedisValue::from_redis_value(reply.into_value()).unwrap();
                prop_assert_eq!(ours, theirs);
            }
        }
    }

    proptest! {
        /// Whatever comes from the socket, reading it never panics.
        #[test]
        fn any_bytes_are_read_without_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&bytes);
            let mut answer = b"*2\r\n".to_vec();
            answer.extend_from_slice(&bytes);
            let _ = parse(&answer);
        }
    }

    #[test]
    fn error_answers_and_broken_bytes_are_told_apart() {
        let (answer, used) = parse(b"-NOSCRIPT No matching script\r\n:1\r\n")
            .unwrap()
            .unwrap();
        let error = answer.unwrap_err();
        assert_eq!(
            (error.code(), error.is_broken(), used),
            (Some("NOSCRIPT"), false, 30)
        );
        let readonly = parse(b"-READONLY You can't write\r\n").unwrap().unwrap().0;
        assert!(readonly.unwrap_err().is_broken(), "a replica: call another");
        for broken in [
            &b"?x\r\n"[..],
            b":1\n",
            b":x\r\n",
            b"$3\r\nabcd\r\n",
            b"*999999999\r\n",
        ] {
            assert!(parse(broken).is_err(), "{broken:?}");
        }
    }
}
