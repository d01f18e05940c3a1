//! Membership changes and refusing strangers.

use sen_chaos::wait_for;
use sen_proto::raft::v1::NodeStatusRequest;
use sen_proto::raft::v1::raft_client::RaftClient;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learners_promotion_and_removal() {
    let mut c = cluster("membership", FAST);
    c.form(2).await.unwrap();
    c.add(3).unwrap();
    c.start(3).unwrap();
    let client = c.client().unwrap();
    let addr3 = c.grpc(3).unwrap();
    c.wait_serving(3, T).await.unwrap();

    // Join as a learner, then promote.
    let r = client.add_node(3, &addr3, true).await.unwrap();
    assert!(!r.member.unwrap().voter);
    let s = c.status().await.unwrap();
    let m3 = s.members.iter().find(|m| m.id == 3).unwrap();
    assert_eq!(m3.role, "learner");
    client.promote_node(3).await.unwrap();
    let s = c.status().await.unwrap();
    assert!(s.members.iter().find(|m| m.id == 3).unwrap().voter);

    // Re-adding the same node is idempotent (a retried add-node after a
    // timeout just finishes the job); a clash of id or address is refused.
    let again = client.add_node(3, &addr3, false).await.unwrap();
    assert!(again.member.unwrap().voter);
    let e = client.add_node(3, "127.0.0.99:1", false).await.unwrap_err().to_string();
    assert!(e.contains("already a member at"), "{e}");
    let e = client.add_node(9, &addr3, false).await.unwrap_err().to_string();
    assert!(e.contains("already used by node 3"), "{e}");
    let e = client.remove_node(42).await.unwrap_err().to_string();
    assert!(e.contains("not a member"), "{e}");

    // Remove the leader itself: the others carry on.
    let leader = c.wait_leader(None, T).await.unwrap();
    client.remove_node(leader).await.unwrap();
    let rest: Vec<u64> = (1..=3).filter(|i| *i != leader).collect();
    let survivor = c.client_for(rest[0]).unwrap();
    let s = wait_for("a new leader among the remaining nodes", T, || async {
        let s = survivor.status().await?;
        Ok((s.leader_id != 0 && s.leader_id != leader && s.members.len() == 2).then_some(s))
    })
    .await
    .unwrap();
    assert!(s.members.iter().all(|m| m.id != leader));
    let w = survivor.put("portal", b"after-removal", b"ok").await.unwrap();
    assert!(w.revision > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_another_cluster_and_wrong_ids_are_refused() {
    // Two independent one-node clusters: A = {1}, B = {7}.
    let mut a = cluster("cluster-a", FAST);
    a.form(1).await.unwrap();
    let mut b = cluster("cluster-b", FAST);
    b.add(7).unwrap();
    b.start(7).unwrap();
    let addr7 = b.grpc(7).unwrap();
    b.wait_serving(7, T).await.unwrap();
    b.client_for(7).unwrap().init().await.unwrap();

    // A cannot adopt B's node: it already belongs to cluster B.
    let e = a
        .client()
        .unwrap()
        .add_node(7, &addr7, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("already belongs to cluster"), "{e}");
    // Nor under another id.
    let e = a
        .client()
        .unwrap()
        .add_node(8, &addr7, false)
        .await
        .unwrap_err()
        .to_string();
    // (Its certificate names node 7: the TLS check refuses it before the
    // join request is even sent.)
    assert!(e.contains("did not prove it is node 8"), "{e}");
    // An id A already has is refused before anything is sent.
    let e = a
        .client()
        .unwrap()
        .add_node(1, &addr7, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("already a member at"), "{e}");
    // B is untouched.
    assert_eq!(b.status().await.unwrap().members.len(), 1);

    // A fresh node with id 5 refuses to be added as id 6.
    a.add(5).unwrap();
    a.start(5).unwrap();
    let addr5 = a.grpc(5).unwrap();
    let e = wait_for("node 5 to refuse a wrong id", T, || async {
        match a.client()?.add_node(6, &addr5, false).await {
            Err(e) if e.to_string().contains("did not prove it is node 6") => Ok(Some(e.to_string())),
            _ => Ok(None),
        }
    })
    .await
    .unwrap();
    assert!(e.contains("sen certs node --id 6"), "{e}");

    // Peer RPCs carrying another cluster id are refused, on every call.
    let cluster_a = a.status().await.unwrap().cluster_id;
    // (As node 1 of cluster A, with its certificate: mutual TLS passes,
    // the cluster id does not.)
    let mut raw = RaftClient::new(b.peer_channel(7, 1).await.unwrap());
    let mut req = tonic::Request::new(NodeStatusRequest {});
    req.metadata_mut().insert("sen-cluster-id", cluster_a.parse().unwrap());
    req.metadata_mut().insert("sen-from-node", "1".parse().unwrap());
    let e = raw.node_status(req).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        e.message().contains("refusing a call from node 1 of cluster"),
        "{}",
        e.message()
    );
    // ...and calls meant for another node id.
    let cluster_b = b.status().await.unwrap().cluster_id;
    let mut req = tonic::Request::new(NodeStatusRequest {});
    req.metadata_mut().insert("sen-cluster-id", cluster_b.parse().unwrap());
    req.metadata_mut().insert("sen-from-node", "1".parse().unwrap());
    req.metadata_mut().insert("sen-to-node", "9".parse().unwrap());
    let e = raw.node_status(req).await.unwrap_err();
    assert!(e.message().contains("this is node 7, not node 9"), "{}", e.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_requests_from_another_cluster_are_refused() {
    let mut a = cluster("fwd-a", FAST);
    a.form(1).await.unwrap();
    let mut b = cluster("fwd-b", FAST);
    b.form(1).await.unwrap();
    let cluster_a = a.status().await.unwrap().cluster_id;
    // Node 1 of cluster A (its certificate) forwards a request to B.
    let mut kv = sen_proto::v1::kv_client::KvClient::new(b.peer_channel(1, 1).await.unwrap());
    let mut req = tonic::Request::new(sen_proto::v1::PutRequest {
        header: None,
        db: "portal".into(),
        key: b"k".to_vec(),
        value: b"v".to_vec(),
    });
    req.metadata_mut().insert("sen-from-node", "1".parse().unwrap());
    req.metadata_mut().insert("sen-forwarded-by", "1".parse().unwrap());
    req.metadata_mut().insert(
        "sen-on-behalf-of",
        r#"{"User":{"name":"admin","via":"Certificate"}}"#.parse().unwrap(),
    );
    req.metadata_mut().insert("sen-cluster-id", cluster_a.parse().unwrap());
    let e = kv.put(req).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        e.message().contains("refuses a request forwarded by node 1"),
        "{}",
        e.message()
    );
}
