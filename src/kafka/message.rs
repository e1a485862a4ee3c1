//! Wire types shared with clients: the protobuf `Header` carried in a record's
//! `metadata` header (protocol.md §4).

use std::collections::HashMap;

use prost::Message;

/// `message Header { map<string, string> metadata = 1; }` (package infra.databus).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Header {
    #[prost(map = "string, string", tag = "1")]
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
}
