#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    name: String,
    value: Vec<u8>,
    n: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum StoredRecord {
    V1(Record),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum StoredRecordNext {
    V1(Record),
    V2(Record, u64),
}

#[test]
fn round_trip() {
    let r = StoredRecord::V1(Record {
        name: "Lịch tuần".into(),
        value: vec![0, 1, 2, 255],
        n: u64::MAX,
    });
    let bytes = encode("record", &r).unwrap();
    assert_eq!(bytes[0], 0, "version 1 is variant index 0, the first byte");
    let back: StoredRecord = decode_versioned("record", &bytes, 1).unwrap();
    assert_eq!(back, r);
}

#[test]
fn newer_version_is_refused_with_a_clear_error() {
    let newer = StoredRecordNext::V2(
        Record {
            name: "x".into(),
            value: vec![],
            n: 1,
        },
        7,
    );
    let bytes = encode("record", &newer).unwrap();
    let err = decode_versioned::<StoredRecord>("record", &bytes, 1).unwrap_err();
    assert!(
        matches!(
            err,
            CodecError::UnknownVersion {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade Sen"), "{err}");
}

#[test]
fn trailing_bytes_are_corruption() {
    let mut bytes = encode("n", &5u64).unwrap();
    bytes.push(9);
    let err = decode::<u64>("n", &bytes).unwrap_err();
    assert!(matches!(err, CodecError::Trailing { extra: 1, .. }), "{err}");
}

#[test]
fn truncated_input_is_an_error_not_a_panic() {
    let r = StoredRecord::V1(Record {
        name: "abc".into(),
        value: vec![7; 100],
        n: 3,
    });
    let bytes = encode("record", &r).unwrap();
    for cut in 0..bytes.len() {
        assert!(decode_versioned::<StoredRecord>("record", &bytes[..cut], 1).is_err());
    }
}

#[test]
fn huge_length_prefix_does_not_allocate() {
    // A Vec<u8> whose varint length claims ~2^60 bytes.
    let bytes = [0xFFu8, 0, 0, 0, 0, 0, 0, 0x10, 0];
    assert!(decode::<Vec<u8>>("blob", &bytes).is_err());
}

proptest! {
    #[test]
    fn any_record_round_trips(name in ".*", value in proptest::collection::vec(any::<u8>(), 0..512), n in any::<u64>()) {
        let r = StoredRecord::V1(Record { name, value, n });
        let bytes = encode("record", &r).unwrap();
        let back: StoredRecord = decode_versioned("record", &bytes, 1).unwrap();
        prop_assert_eq!(back, r);
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_versioned::<StoredRecord>("record", &bytes, 1);
    }
}

/// Found by fuzzing (engine/fuzz, targets index, pack and raft_command):
/// a version index of u32::MAX overflowed `found + 1` (a panic in debug
/// builds, "version 0" in release).
#[test]
fn the_largest_version_index_is_refused_without_overflow() {
    let mut bytes = Vec::new();
    bincode::encode_into_std_write(u32::MAX, &mut bytes, bincode::config::standard()).unwrap();
    bytes.extend_from_slice(&[0; 8]);
    let e = decode_v1::<u64>("thing", &bytes).unwrap_err();
    assert!(
        matches!(
            e,
            CodecError::UnknownVersion {
                found: u32::MAX,
                supported: 1,
                ..
            }
        ),
        "{e:?}"
    );
}
