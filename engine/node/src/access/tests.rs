//! Access control on an in-memory state machine.

use super::*;
use crate::auth::{Auth, Presented};
use crate::system::testing::MemControlPlane;
use sen_core::auth::{Action, Credential, Principal};

const B: Duration = Duration::from_secs(1);

fn presented(token: &str) -> Presented<'_> {
    Presented {
        cert: None,
        token: Some(token),
        on_behalf: None,
        from_node: None,
        caller_addr: None,
    }
}

async fn with_admin() -> (MemControlPlane, String) {
    let p = MemControlPlane::default();
    let t = bootstrap(&p, "admin", 1, B).await.unwrap().expect("first bootstrap");
    assert!(bootstrap(&p, "admin", 2, B).await.unwrap().is_none(), "only once");
    (p, t.reveal())
}

fn auth() -> Auth {
    Auth::new(true, 5, 100)
}

#[tokio::test]
async fn the_first_admin_token_works_and_grants_decide() {
    let (p, admin_token) = with_admin().await;
    let a = auth();
    let (who, grants, _) = a.resolve(&p, &presented(&admin_token), 10).unwrap();
    assert!(matches!(&who, Principal::User { name, via: Credential::Token { .. } } if name == "admin"));
    assert!(grants.allows(&Action::Administer));

    add_user(&p, "vp-ubnd", "admin", 3, B).await.unwrap();
    assert!(add_user(&p, "vp-ubnd", "admin", 3, B).await.is_err(), "twice");
    let g = make_grant("site-admin", &["site:lich-tuan".into(), "db:cong-bao".into()]).unwrap();
    grant(&p, "vp-ubnd", g, 4, B).await.unwrap();
    let (t, rec) = create_token(&p, "vp-ubnd", "laptop", None, "admin", 5, B)
        .await
        .unwrap();
    assert_eq!((rec.user.as_str(), rec.name.as_str()), ("vp-ubnd", "laptop"));
    assert!(!rec.hash.contains(&t.reveal()[21..]), "only a hash is stored");
    let (_, grants, _) = a.resolve(&p, &presented(&t.reveal()), 10).unwrap();
    assert!(grants.allows(&Action::SiteWrite("lich-tuan")));
    assert!(!grants.allows(&Action::SiteWrite("portal")));

    // Scopes merge; a revoke of one scope keeps the others.
    grant(
        &p,
        "vp-ubnd",
        make_grant("site-admin", &["site:xa-*".into()]).unwrap(),
        6,
        B,
    )
    .await
    .unwrap();
    let u = revoke(
        &p,
        "vp-ubnd",
        Role::SiteAdmin,
        vec!["site:lich-tuan".parse().unwrap()],
        7,
        B,
    )
    .await
    .unwrap();
    assert_eq!(u.grants[0].scopes.len(), 2);
    let (_, grants, _) = a.resolve(&p, &presented(&t.reveal()), 10).unwrap();
    assert!(!grants.allows(&Action::SiteWrite("lich-tuan")) && grants.allows(&Action::SiteWrite("xa-1")));
}

#[tokio::test]
async fn revoked_expired_unknown_and_orphaned_tokens_are_refused_with_the_reason() {
    let (p, _) = with_admin().await;
    let a = auth();
    add_user(&p, "ops", "admin", 1, B).await.unwrap();
    let (t1, _) = create_token(&p, "ops", "a", None, "admin", 1, B).await.unwrap();
    let (t2, _) = create_token(&p, "ops", "b", Some(Duration::from_secs(60)), "admin", 1_000, B)
        .await
        .unwrap();
    assert!(a.resolve(&p, &presented(&t2.reveal()), 2_000).is_ok());
    let e = a.resolve(&p, &presented(&t2.reveal()), 62_000).unwrap_err();
    assert!(e.message().contains("expired"), "{}", e.message());
    revoke_token(&p, &t1.id, 5, B).await.unwrap();
    let e = a.resolve(&p, &presented(&t1.reveal()), 10).unwrap_err();
    assert!(e.message().contains("revoked"), "{}", e.message());
    let e = a
        .resolve(&p, &presented(&TokenSecret::generate().reveal()), 10)
        .unwrap_err();
    assert!(e.message().contains("unknown"), "{}", e.message());
    let e = a.resolve(&p, &presented("Bearer nonsense"), 10).unwrap_err();
    assert!(e.message().contains("not a Sen token"), "{}", e.message());
    // Removing the user revokes its tokens.
    let (t3, _) = create_token(&p, "ops", "c", None, "admin", 1, B).await.unwrap();
    assert_eq!(remove_user(&p, "ops", 9, B).await.unwrap(), 2);
    assert!(a.resolve(&p, &presented(&t3.reveal()), 10).is_err());
}

#[test]
fn an_address_refused_too_often_is_throttled_then_forgiven() {
    use crate::auth::Tally;
    let a = auth(); // 5 refusals a minute
    let ip: std::net::IpAddr = "192.0.2.7".parse().unwrap();
    let other: std::net::IpAddr = "192.0.2.8".parse().unwrap();
    let tallies: Vec<Tally> = (0..8).map(|_| a.count_refusal(ip)).collect();
    assert!(tallies[..5].iter().all(|t| *t == Tally::Counted), "{tallies:?}");
    assert_eq!(
        tallies[5],
        Tally::NowThrottled,
        "the refusal that throttles is audited once"
    );
    assert!(tallies[6..].iter().all(|t| *t == Tally::Throttled), "then only counted");
    assert!(a.is_throttled(ip), "refused outright, valid credentials or not");
    assert!(!a.is_throttled(other), "per address");
    assert_eq!(a.count_refusal(other), Tally::Counted);
    assert!(
        crate::auth::Auth::throttled_denial(ip)
            .message()
            .contains("wait a minute")
    );
}

#[tokio::test]
async fn the_last_cluster_admin_stays() {
    let (p, _) = with_admin().await;
    assert!(
        remove_user(&p, "admin", 1, B)
            .await
            .unwrap_err()
            .to_string()
            .contains("last cluster-admin")
    );
    assert!(revoke(&p, "admin", Role::ClusterAdmin, vec![], 1, B).await.is_err());
    add_user(&p, "second", "admin", 1, B).await.unwrap();
    grant(&p, "second", make_grant("cluster-admin", &[]).unwrap(), 1, B)
        .await
        .unwrap();
    revoke(&p, "admin", Role::ClusterAdmin, vec![], 1, B).await.unwrap();
}

/// Two admins removing each other at once (each checked before the other
/// applied, as on a leader elected a moment ago): the compare on the
/// other admin's revision makes the second change fail instead of
/// leaving the cluster without an admin.
#[tokio::test]
async fn two_admins_cannot_remove_each_other_at_once() {
    let (p, _) = with_admin().await;
    add_user(&p, "second", "admin", 1, B).await.unwrap();
    grant(&p, "second", make_grant("cluster-admin", &[]).unwrap(), 1, B)
        .await
        .unwrap();
    // The check for removing "admin" passes while "second" is an admin...
    let (_, rev) = get_user(&p, "admin").unwrap();
    let mut compares = vec![cmp(&system::user_key("admin"), CompareTarget::ModRevision(rev))];
    compares.extend(others_stay_admin(&p, "admin").unwrap());
    // ...then "second" is removed first...
    remove_user(&p, "second", 2, B).await.unwrap();
    // ...so the removal of "admin" decided on the old view does not apply.
    let applied = txn(
        &p,
        compares,
        vec![TxnOp::Delete {
            key: system::user_key("admin"),
        }],
        B,
    )
    .await
    .unwrap();
    assert!(!applied, "the last cluster-admin was removed");
    assert!(get_user(&p, "admin").is_ok());
    assert!(remove_user(&p, "admin", 3, B).await.is_err());
}

#[test]
fn grants_are_shaped_by_their_role() {
    assert!(make_grant("site-admin", &[]).is_err());
    assert!(make_grant("operator", &["site:x".into()]).is_err());
    assert!(
        make_grant("root", &[])
            .unwrap_err()
            .to_string()
            .contains("cluster-admin")
    );
    assert!(make_grant("reader", &["db:x*".into()]).is_ok());
}

#[tokio::test]
async fn private_sites() {
    let p = MemControlPlane::default();
    assert!(!site_is_private(&p, "noi-bo"));
    set_site_private(&p, "noi-bo", true, 1, B).await.unwrap();
    assert!(site_is_private(&p, "noi-bo"));
    set_site_private(&p, "noi-bo", false, 2, B).await.unwrap();
    assert!(!site_is_private(&p, "noi-bo"));
}

/// A node certificate's DER, for requests that come from a peer.
fn node_cert_der(dir: &std::path::Path, id: u64) -> Vec<u8> {
    use tokio_rustls::rustls::pki_types::{CertificateDer, pem::PemObject};
    sen_security::certs::init(dir, id, &[], 1).unwrap();
    let pem = std::fs::read(sen_security::certs::node_files(dir, id).cert).unwrap();
    CertificateDer::from_pem_slice(&pem).unwrap().to_vec()
}

#[tokio::test]
async fn a_forwarded_caller_is_checked_again_where_the_request_lands() {
    let (p, _) = with_admin().await;
    let a = auth();
    add_user(&p, "cong-bao-admin", "admin", 3, B).await.unwrap();
    grant(
        &p,
        "cong-bao-admin",
        make_grant("site-admin", &["site:cong-bao".into()]).unwrap(),
        4,
        B,
    )
    .await
    .unwrap();
    let (t, _) = create_token(&p, "cong-bao-admin", "", None, "admin", 5, B)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let der = node_cert_der(dir.path(), 2);
    let forwarded = |behalf: &'static str| Presented {
        cert: Some(&der),
        token: None,
        on_behalf: Some(behalf),
        from_node: Some(2),
        caller_addr: Some("192.0.2.9:4000"),
    };
    let behalf: &'static str = Box::leak(
        serde_json::to_string(&Principal::User {
            name: "cong-bao-admin".into(),
            via: Credential::Token { id: t.id.clone() },
        })
        .unwrap()
        .into_boxed_str(),
    );
    // Node 2 vouches for the user; the grants are this replica's.
    let (who, grants, by) = a.resolve(&p, &forwarded(behalf), 10).unwrap();
    assert_eq!(by, Some(2));
    assert!(matches!(who, Principal::User { ref name, .. } if name == "cong-bao-admin"));
    assert!(grants.allows(&Action::SiteWrite("cong-bao")));
    assert!(!grants.allows(&Action::SiteWrite("portal")));
    // The token was revoked after the follower accepted it: refused here.
    revoke_token(&p, &t.id, 20, B).await.unwrap();
    let e = a.resolve(&p, &forwarded(behalf), 30).unwrap_err();
    assert!(e.message().contains("revoked"), "{}", e.message());
    // A node never forwards for "insecure" or for itself.
    for bad in ["\"Insecure\"", "{\"Node\":3}"] {
        let e = a.resolve(&p, &forwarded(bad), 30).unwrap_err();
        assert!(e.message().contains("only an insecure node would"), "{}", e.message());
    }
    // A node certificate claiming another node id is refused.
    let mut lying = forwarded(behalf);
    lying.from_node = Some(3);
    let e = a.resolve(&p, &lying, 30).unwrap_err();
    assert!(e.message().contains("node 2's"), "{}", e.message());
}

#[test]
fn each_caller_gets_its_own_write_budget() {
    let auth = Auth::new(true, 5, 100).with_write_limit(2, 2);
    let user = |name: &str| Principal::User {
        name: name.into(),
        via: Credential::Certificate,
    };
    assert!(auth.admit_write(&user("a")).is_ok());
    assert!(auth.admit_write(&user("a")).is_ok());
    let e = auth.admit_write(&user("a")).unwrap_err();
    assert!(e.message().contains("more than 2 writes per second"), "{}", e.message());
    assert_eq!(e.status().code(), tonic::Code::ResourceExhausted);
    // Another user is not affected; insecure mode is not limited.
    assert!(auth.admit_write(&user("b")).is_ok());
    for _ in 0..10 {
        assert!(auth.admit_write(&Principal::Insecure).is_ok());
    }
    // No limit configured: everything passes.
    let open = Auth::new(true, 5, 100).with_write_limit(0, 0);
    for _ in 0..10 {
        assert!(open.admit_write(&user("a")).is_ok());
    }
}
