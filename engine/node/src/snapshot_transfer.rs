//! Streaming a snapshot's files from the leader to a follower.
//!
//! One client-streaming call (`Raft.InstallSnapshot`) carries frames:
//!
//! ```text
//! Header{vote, manifest}  (Chunk{file, offset, data}* FileEnd{file, blake3})*  Done
//! ```
//!
//! Files go in manifest order, chunks in offset order; memory stays bounded
//! by a few chunks on each side (a 4-frame channel on the sender, one chunk
//! at a time on the receiver). The receiver verifies every file's size and
//! blake3 and fsyncs it before the snapshot is handed to openraft.

use std::time::Duration;

use openraft::raft::SnapshotResponse;
use sen_core::codec;
use sen_proto::raft::v1::SnapshotFrame;
use sen_raft::{TypeConfig, Vote};
use sen_store::SnapshotHandle;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::peers::PeerRaftClient;

pub use sen_raft::schema::snapshot::Frame;

pub fn encode(frame: &Frame) -> Result<SnapshotFrame, Status> {
    frame
        .encode()
        .map(|data| SnapshotFrame { data })
        .map_err(|e| Status::internal(e.to_string()))
}

pub fn decode(frame: &SnapshotFrame) -> Result<Frame, Status> {
    Frame::decode(&frame.data).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// Send `snapshot` to the peer behind `client`.
pub async fn send(
    mut client: PeerRaftClient,
    vote: Vote,
    snapshot: SnapshotHandle,
    chunk_bytes: usize,
    timeout: Duration,
) -> Result<SnapshotResponse<TypeConfig>, Status> {
    let (tx, rx) = mpsc::channel::<SnapshotFrame>(4);
    let producer = tokio::spawn(produce(tx, vote, snapshot, chunk_bytes));
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    req.set_timeout(timeout);
    let result = client.install_snapshot(req).await;
    // If the receiver gave up early, the producer stops at its next send.
    let produced = producer
        .await
        .map_err(|e| Status::internal(format!("snapshot sender task failed: {e}")))?;
    let resp = result?.into_inner();
    produced?;
    codec::decode_v1("snapshot response", &resp.data).map_err(|e| Status::internal(e.to_string()))
}

async fn produce(
    tx: mpsc::Sender<SnapshotFrame>,
    vote: Vote,
    snapshot: SnapshotHandle,
    chunk_bytes: usize,
) -> Result<(), Status> {
    let closed = || Status::cancelled("the receiver closed the snapshot stream");
    let manifest = snapshot.manifest().clone();
    tx.send(encode(&Frame::Header {
        vote,
        manifest: manifest.clone(),
    })?)
    .await
    .map_err(|_| closed())?;
    let mut buf = vec![0u8; chunk_bytes];
    for (i, spec) in manifest.files.iter().enumerate() {
        let file = snapshot.open_file(i).map_err(|e| Status::internal(e.to_string()))?;
        let mut file = tokio::fs::File::from_std(file);
        let mut hasher = blake3::Hasher::new();
        let mut offset = 0u64;
        loop {
            let n = file
                .read(&mut buf)
                .await
                .map_err(|e| Status::internal(format!("read snapshot file {}: {e}", spec.name)))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            tx.send(encode(&Frame::Chunk {
                file: i as u32,
                offset,
                data: buf[..n].to_vec(),
            })?)
            .await
            .map_err(|_| closed())?;
            offset += n as u64;
        }
        if offset != spec.size {
            return Err(Status::internal(format!(
                "snapshot file {} changed while being sent ({offset} bytes, expected {})",
                spec.name, spec.size
            )));
        }
        tx.send(encode(&Frame::FileEnd {
            file: i as u32,
            blake3: *hasher.finalize().as_bytes(),
        })?)
        .await
        .map_err(|_| closed())?;
    }
    tx.send(encode(&Frame::Done)?).await.map_err(|_| closed())?;
    Ok(())
}

#[cfg(test)]
mod golden {
    //! Snapshot transfer frames, pinned (a node of the next release must
    //! read them).

    use std::collections::{BTreeMap, BTreeSet};

    use openraft::vote::RaftLeaderId;
    use sen_raft::{LogId, Membership, NodeInfo, SnapshotMeta, StoredMembership};
    use sen_store::{SnapshotFile, snapshot::SnapshotManifest};

    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn every_frame_is_pinned() {
        let log_id = LogId::new(
            openraft::impls::leader_id_std::LeaderId { term: 4, voted_for: 1 }.to_committed(),
            500,
        );
        let membership = Membership::new(
            vec![BTreeSet::from([1])],
            BTreeMap::from([(
                1,
                NodeInfo {
                    addr: "127.0.0.1:7101".into(),
                },
            )]),
        )
        .unwrap();
        let frames = [
            Frame::Header {
                vote: Vote::new_committed(4, 1),
                manifest: SnapshotManifest {
                    meta: SnapshotMeta {
                        last_log_id: Some(log_id),
                        last_membership: StoredMembership::new(Some(log_id), membership),
                    },
                    files: vec![SnapshotFile {
                        name: "1.sst".into(),
                        size: 3,
                    }],
                    created_at_ms: 1,
                },
            },
            Frame::Chunk {
                file: 0,
                offset: 0,
                data: b"abc".to_vec(),
            },
            Frame::FileEnd {
                file: 0,
                blake3: [7; 32],
            },
            Frame::Done,
        ];
        let got: Vec<String> = frames.iter().map(|f| hex(&encode(f).unwrap().data)).collect();
        assert_eq!(
            got, GOLDEN_FRAMES,
            "a snapshot frame's encoding changed (new bytes on the left)"
        );
    }

    const GOLDEN_FRAMES: [&str; 4] = [
        "0000040101010104fbf4010104fbf40101010101010e3132372e302e302e313a37313031000105312e7373740301",
        "0001000003616263",
        "0002000707070707070707070707070707070707070707070707070707070707070707",
        "0003",
    ];
}
