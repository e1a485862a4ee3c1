//! The messages the gateway carries, as both sides see them (protocol.md §4,
//! §5; `proto/databus.proto`): the record a `SET` or `HSET` asks to produce, the
//! protobuf `Header` carried in a record's `metadata` header, the two encodings
//! of a consumed message returned by `MGET` (protobuf `MessagePB` and JSON), and
//! what a fetch answers. The session and the Kafka side both speak these; this
//! module knows neither sockets nor Kafka clients.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use prost::Message;

/// What a SET or HSET asks to produce. Borrowed: the producer copies key,
/// value and headers into its own batch, the only copy on the produce path.
pub struct Record<'a> {
    pub topic: &'a str,
    pub key: &'a [u8],
    pub value: &'a [u8],
    /// The AUTH color, carried in the `color` header (empty when none).
    pub color: &'a str,
    /// The `metadata` header: a protobuf `Header` (see [`metadata_header`]).
    pub metadata: Option<&'a [u8]>,
}

/// The answer to an MGET's fetch.
pub enum Fetched {
    /// The batch, each message already encoded as the client asked.
    Messages(Vec<Bytes>),
    /// A completed rebalance left the member without partitions.
    TooManyConsumers,
    /// The member is gone (the gateway is stopping).
    Gone,
    /// Kafka's client could not make the member's consumer: why.
    Failed(String),
}

/// `message Header { map<string, string> metadata = 1; }` (package infra.databus).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Header {
    #[prost(map = "string, string", tag = "1")]
    pub metadata: HashMap<String, String>,
}

/// `MessagePB` (package infra.databus); field numbers are the original service's.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MessagePb {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
    #[prost(string, tag = "3")]
    pub topic: String,
    #[prost(int32, tag = "4")]
    pub partition: i32,
    #[prost(int64, tag = "5")]
    pub offset: i64,
    /// Seconds since the epoch.
    #[prost(int64, tag = "6")]
    pub timestamp: i64,
    #[prost(map = "string, string", tag = "7")]
    pub metadata: HashMap<String, String>,
}

/// The `metadata` header value for an HSET argument given either as a JSON object
/// of strings (converted) or as a protobuf `Header` (checked, then kept as sent).
/// `None` when it is neither.
pub fn metadata_header(raw: &[u8]) -> Option<Vec<u8>> {
    // A protobuf Header starts with tag 0x0a (or is empty); '{' can only be JSON.
    if raw.first() == Some(&b'{') {
        let metadata: HashMap<String, String> = serde_json::from_slice(raw).ok()?;
        return Some(Header { metadata }.encode_to_vec());
    }
    Header::decode(raw).ok()?;
    Some(raw.to_vec())
}

/// How `MGET` encodes each message: `pb` (any case) or JSON for anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    pub fn from_arg(arg: Option<&[u8]>) -> Encoding {
        match arg {
            Some(a) if a.eq_ignore_ascii_case(b"pb") => Encoding::Protobuf,
            _ => Encoding::Json,
        }
    }
}

/// A consumed record, borrowed from the consumer, ready to be encoded.
pub struct Consumed<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    /// The raw `metadata` header, a protobuf `Header`.
    pub metadata: Option<&'a [u8]>,
    /// The `color` header: who the record is for (not encoded).
    pub color: Option<&'a [u8]>,
}

/// A subscriber's rules for the records its member reads (protocol.md §5):
/// the record encoded as the client asked, or None when it is not the
/// client's (another color) and is skipped. Made by the session for each
/// MGET and applied by the member as it reads, so that the member knows
/// Kafka and nothing of colors or encodings.
pub type Pick = Box<dyn Fn(&Consumed<'_>) -> Option<(Bytes, EncodeNotes)> + Send + Sync>;

/// What encoding noticed, for metrics and logs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EncodeNotes {
    /// The value was not JSON and went out as a JSON string.
    pub value_not_json: bool,
}

impl Consumed<'_> {
    pub fn encode(&self, encoding: Encoding) -> (Bytes, EncodeNotes) {
        match encoding {
            Encoding::Protobuf => (self.encode_pb(), EncodeNotes::default()),
            Encoding::Json => self.encode_json(),
        }
    }

    fn metadata_map(&self) -> Option<HashMap<String, String>> {
        let header = Header::decode(self.metadata?).ok()?;
        Some(header.metadata)
    }

    fn timestamp_secs(&self) -> i64 {
        self.timestamp_ms.map_or(0, |ms| ms.div_euclid(1000))
    }

    /// The bytes `MessagePb { .. }.encode_to_vec()` gives, written straight
    /// from the borrowed record: no owned copy of key, value and topic first
    /// (this runs once per delivered message on the control thread). Fields in
    /// tag order, proto3 defaults (empty, zero) left out, as prost does;
    /// `pb_is_what_prost_encodes` holds the two together.
    fn encode_pb(&self) -> Bytes {
        use prost::encoding::{self, WireType};
        let key = String::from_utf8_lossy(self.key.unwrap_or_default());
        let value = self.value.unwrap_or_default();
        let metadata = self.metadata_map().unwrap_or_default();
        let mut out = Vec::with_capacity(32 + key.len() + value.len() + self.topic.len());
        let bytes_field = |tag: u32, data: &[u8], out: &mut Vec<u8>| {
            if !data.is_empty() {
                encoding::encode_key(tag, WireType::LengthDelimited, out);
                encoding::encode_varint(data.len() as u64, out);
                out.extend_from_slice(data);
            }
        };
        bytes_field(1, key.as_bytes(), &mut out);
        bytes_field(2, value, &mut out);
        bytes_field(3, self.topic.as_bytes(), &mut out);
        // int32 and int64 are varints of the two's complement, sign-extended.
        for (tag, number) in [
            (4, i64::from(self.partition)),
            (5, self.offset),
            (6, self.timestamp_secs()),
        ] {
            if number != 0 {
                encoding::encode_key(tag, WireType::Varint, &mut out);
                encoding::encode_varint(number as u64, &mut out);
            }
        }
        if !metadata.is_empty() {
            encoding::hash_map::encode(
                encoding::string::encode,
                encoding::string::encoded_len,
                encoding::string::encode,
                encoding::string::encoded_len,
                7,
                &metadata,
                &mut out,
            );
        }
        out.into()
    }

    /// `{"key":..,"value":..,"topic":..,"partition":..,"offset":..,"timestamp":..,"metadata":..}`
    /// in exactly this order (clients of the original service parse it so).
    fn encode_json(&self) -> (Bytes, EncodeNotes) {
        let mut notes = EncodeNotes::default();
        let value_len = self.value.map_or(4, <[u8]>::len);
        let mut out = Vec::with_capacity(96 + self.topic.len() + value_len);
        out.extend_from_slice(b"{\"key\":");
        json_string(
            &mut out,
            &String::from_utf8_lossy(self.key.unwrap_or_default()),
        );
        out.extend_from_slice(b",\"value\":");
        match self.value {
            None => out.extend_from_slice(b"null"),
            Some(v) if is_json(v) => out.extend_from_slice(v),
            Some(v) => {
                notes.value_not_json = true;
                json_string(&mut out, &String::from_utf8_lossy(v));
            }
        }
        out.extend_from_slice(b",\"topic\":");
        json_string(&mut out, self.topic);
        out.extend_from_slice(
            format!(
                ",\"partition\":{},\"offset\":{},\"timestamp\":{},\"metadata\":",
                self.partition,
                self.offset,
                self.timestamp_secs()
            )
            .as_bytes(),
        );
        match self.metadata_map() {
            // Sorted, so the same record always encodes to the same bytes.
            Some(map) => {
                let sorted: BTreeMap<_, _> = map.into_iter().collect();
                serde_json::to_writer(&mut out, &sorted).expect("a map of strings serialises");
            }
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
        (out.into(), notes)
    }
}

fn json_string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(out, s).expect("a string serialises");
}

fn is_json(value: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(value).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_objects_become_protobuf_headers() {
        let encoded = metadata_header(br#"{"trace":"abc","n":"1"}"#).unwrap();
        let header = Header::decode(encoded.as_slice()).unwrap();
        assert_eq!(header.metadata["trace"], "abc");
        assert_eq!(header.metadata["n"], "1");
    }

    #[test]
    fn protobuf_headers_pass_through() {
        let mut metadata = HashMap::new();
        metadata.insert("k".to_owned(), "v".to_owned());
        let raw = Header { metadata }.encode_to_vec();
        assert_eq!(metadata_header(&raw), Some(raw));
    }

    #[test]
    fn anything_else_is_refused() {
        assert_eq!(metadata_header(br#"{"n":1}"#), None);
        assert_eq!(metadata_header(b"{not json"), None);
        assert_eq!(metadata_header(b"\xff\xff\xff"), None);
    }

    fn consumed<'a>(value: Option<&'a [u8]>, metadata: Option<&'a [u8]>) -> Consumed<'a> {
        Consumed {
            key: Some(b"k"),
            value,
            topic: "t",
            partition: 0,
            offset: 5,
            timestamp_ms: Some(1_546_300_800_999),
            metadata,
            color: None,
        }
    }

    #[test]
    fn json_has_the_spec_field_order_and_raw_values() {
        let (json, notes) = consumed(Some(br#"{"a": [1, 2]}"#), None).encode(Encoding::Json);
        assert_eq!(
            json,
            r#"{"key":"k","value":{"a": [1, 2]},"topic":"t","partition":0,"offset":5,"timestamp":1546300800,"metadata":null}"#
        );
        assert_eq!(notes, EncodeNotes::default());
    }

    #[test]
    fn json_strings_for_non_json_values_null_for_none() {
        let (json, notes) = consumed(Some(b"plain \"text\" \xff"), None).encode(Encoding::Json);
        let want = "{\"key\":\"k\",\"value\":\"plain \\\"text\\\" \u{fffd}\",";
        assert!(json.starts_with(want.as_bytes()), "{json:?}");
        assert!(notes.value_not_json);
        let (json, _) = consumed(None, None).encode(Encoding::Json);
        assert!(
            json.starts_with(br#"{"key":"k","value":null,"topic""#),
            "{json:?}"
        );
    }

    #[test]
    fn metadata_becomes_an_object() {
        let header = metadata_header(br#"{"b":"2","a":"1"}"#).unwrap();
        let (json, _) = consumed(Some(b"1"), Some(&header)).encode(Encoding::Json);
        assert!(
            json.ends_with(br#""metadata":{"a":"1","b":"2"}}"#),
            "{json:?}"
        );
    }

    #[test]
    fn pb_is_what_prost_encodes() {
        let header = metadata_header(br#"{"a":"1"}"#).unwrap();
        let records = [
            consumed(Some(b"\x00bin"), Some(&header)),
            consumed(None, None),
            Consumed {
                key: Some(b"k\xff"),
                value: Some(&[7; 300]),
                topic: "",
                partition: -1,
                offset: 0,
                timestamp_ms: Some(-1_500),
                metadata: None,
                color: None,
            },
            Consumed {
                key: None,
                value: Some(b""),
                topic: "topic",
                partition: i32::MAX,
                offset: i64::MAX,
                timestamp_ms: None,
                metadata: Some(b"not a header"),
                color: Some(b"eu"),
            },
        ];
        for record in records {
            let derived = MessagePb {
                key: String::from_utf8_lossy(record.key.unwrap_or_default()).into_owned(),
                value: record.value.unwrap_or_default().to_vec(),
                topic: record.topic.to_owned(),
                partition: record.partition,
                offset: record.offset,
                timestamp: record.timestamp_secs(),
                metadata: record.metadata_map().unwrap_or_default(),
            }
            .encode_to_vec();
            assert_eq!(record.encode_pb(), derived);
        }
    }

    #[test]
    fn protobuf_round_trip() {
        let header = metadata_header(br#"{"a":"1"}"#).unwrap();
        let (pb, _) = consumed(Some(b"\x00bin"), Some(&header)).encode(Encoding::Protobuf);
        let m = MessagePb::decode(pb).unwrap();
        assert_eq!(
            (
                m.key.as_str(),
                m.value.as_slice(),
                m.topic.as_str(),
                m.partition,
                m.offset,
                m.timestamp
            ),
            ("k", &b"\x00bin"[..], "t", 0, 5, 1_546_300_800)
        );
        assert_eq!(m.metadata["a"], "1");
    }

    #[test]
    fn encoding_argument() {
        assert_eq!(Encoding::from_arg(Some(b"PB")), Encoding::Protobuf);
        assert_eq!(Encoding::from_arg(Some(b"json")), Encoding::Json);
        assert_eq!(Encoding::from_arg(Some(b"x")), Encoding::Json);
        assert_eq!(Encoding::from_arg(None), Encoding::Json);
    }
}
