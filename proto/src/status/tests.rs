//! The contract as a table: every kind round-trips, maps to its code and
//! retry class, and statuses from elsewhere are classified without reading
//! their text.

use super::*;

fn leader() -> Option<LeaderHint> {
    Some(LeaderHint {
        id: 2,
        addr: "127.0.0.2:7102".into(),
    })
}

#[test]
fn every_kind_round_trips_with_its_code_and_retry_class() {
    let table = [
        (ErrorKind::NotLeader, Code::Unavailable, Retry::Retry),
        (ErrorKind::Unavailable, Code::Unavailable, Retry::Retry),
        (ErrorKind::Timeout, Code::DeadlineExceeded, Retry::Retry),
        (ErrorKind::NoCluster, Code::FailedPrecondition, Retry::OtherEndpoint),
        (ErrorKind::InvalidArgument, Code::InvalidArgument, Retry::Never),
        (ErrorKind::FailedPrecondition, Code::FailedPrecondition, Retry::Never),
        (ErrorKind::NotFound, Code::NotFound, Retry::Never),
        (ErrorKind::Internal, Code::Internal, Retry::Never),
        (ErrorKind::Unauthenticated, Code::Unauthenticated, Retry::Never),
        (ErrorKind::PermissionDenied, Code::PermissionDenied, Retry::Never),
        (ErrorKind::Exhausted, Code::ResourceExhausted, Retry::Never),
    ];
    assert_eq!(table.len(), ErrorKind::ALL.len(), "a kind is missing from the table");
    for (kind, code, retry) in table {
        for hint in [None, leader()] {
            for unknown in [false, true] {
                let mut e = WireError::new(kind, format!("{kind:?} happened; do this")).with_leader(hint.clone());
                e.outcome_unknown = unknown;
                let s = e.to_status();
                assert_eq!(s.code(), code, "{kind:?}");
                let back = WireError::from_status(&s);
                assert_eq!(back, e, "{kind:?} did not round-trip");
                assert_eq!(back.retry(), retry, "{kind:?}");
            }
        }
    }
}

#[test]
fn the_details_survive_the_wire_encoding() {
    // What a client receives is rebuilt from headers: the details travel as
    // `grpc-status-details-bin`.
    let e = WireError::new(ErrorKind::NotLeader, "node 1 is not the leader").with_leader(leader());
    let mut headers = http::HeaderMap::new();
    e.to_status().add_header(&mut headers).unwrap();
    assert!(headers.contains_key("grpc-status-details-bin"));
    let received = Status::from_header_map(&headers).unwrap();
    assert_eq!(WireError::from_status(&received), e);
}

#[test]
fn a_message_never_decides_the_class() {
    // A node's precondition failure that happens to mention a connection
    // is still a precondition failure.
    let e = WireError::new(
        ErrorKind::FailedPrecondition,
        "transport connection broken pipe: the node refuses",
    );
    assert_eq!(WireError::from_status(&e.to_status()).retry(), Retry::Never);
}

#[test]
fn statuses_without_details_are_classified_by_code() {
    // A broken connection as tonic reports it locally: the source is set.
    let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
    let local = Status::from_error(Box::new(io));
    let w = WireError::from_status(&local);
    assert_eq!(
        (w.kind, w.retry(), w.outcome_unknown),
        (ErrorKind::Unavailable, Retry::Retry, true)
    );
    assert!(w.message.starts_with("connection failed: "), "{}", w.message);
    // gRPC-layer statuses.
    for (code, kind) in [
        (Code::Cancelled, ErrorKind::Unavailable),
        (Code::Unknown, ErrorKind::Unavailable),
        // A server that could not decode the request (another release?):
        // retrying cannot help.
        (Code::Internal, ErrorKind::Internal),
        (Code::DeadlineExceeded, ErrorKind::Timeout),
        (Code::Unimplemented, ErrorKind::FailedPrecondition),
        (Code::OutOfRange, ErrorKind::InvalidArgument),
        (Code::DataLoss, ErrorKind::Internal),
    ] {
        assert_eq!(WireError::from_status(&Status::new(code, "x")).kind, kind, "{code:?}");
    }
}

#[test]
fn answers_of_older_nodes_still_carry_the_leader_and_no_cluster() {
    let mut s = Status::unavailable("node 1 is not the leader");
    s.metadata_mut().insert(crate::meta::LEADER_ID, "3".parse().unwrap());
    s.metadata_mut()
        .insert(crate::meta::LEADER_ADDR, "127.0.0.3:7103".parse().unwrap());
    let w = WireError::from_status(&s);
    assert_eq!(w.kind, ErrorKind::NotLeader);
    assert_eq!(
        w.leader,
        Some(LeaderHint {
            id: 3,
            addr: "127.0.0.3:7103".into()
        })
    );
    let mut s = Status::failed_precondition("node 4 is not part of a cluster yet");
    s.metadata_mut().insert(crate::meta::NO_CLUSTER, "1".parse().unwrap());
    assert_eq!(WireError::from_status(&s).retry(), Retry::OtherEndpoint);
    // And this release still writes those headers for them.
    let s = WireError::new(ErrorKind::NotLeader, "x")
        .with_leader(leader())
        .to_status();
    assert_eq!(s.metadata().get(crate::meta::LEADER_ADDR).unwrap(), "127.0.0.2:7102");
}

#[test]
fn errors_of_other_domains_are_not_taken_for_ours() {
    let details = ErrorDetails::with_error_info("NOT_LEADER", "example.com", HashMap::new());
    let s = Status::with_error_details(Code::FailedPrecondition, "x", details);
    assert_eq!(WireError::from_status(&s).kind, ErrorKind::FailedPrecondition);
}
