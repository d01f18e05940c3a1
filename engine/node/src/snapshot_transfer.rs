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
use sen_store::snapshot::SnapshotManifest;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::peers::PeerRaftClient;

/// One frame of a transfer (codec-encoded, versioned).
#[derive(Debug, Serialize, Deserialize)]
pub enum Frame {
    Header { vote: Vote, manifest: SnapshotManifest },
    Chunk { file: u32, offset: u64, data: Vec<u8> },
    FileEnd { file: u32, blake3: [u8; 32] },
    Done,
}

pub fn encode(frame: &Frame) -> Result<SnapshotFrame, Status> {
    codec::encode_v1("snapshot frame", frame)
        .map(|data| SnapshotFrame { data })
        .map_err(|e| Status::internal(e.to_string()))
}

pub fn decode(frame: &SnapshotFrame) -> Result<Frame, Status> {
    codec::decode_v1("snapshot frame", &frame.data).map_err(|e| Status::invalid_argument(e.to_string()))
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
