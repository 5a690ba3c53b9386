use std::sync::Arc;

use super::*;

fn token(jti: &str) -> Revocation {
    Revocation::new(
        Revoked::Token {
            jti: jti.to_string(),
        },
        2_000,
    )
    .unwrap()
}

fn subject(sub: &str, issued_before: u64, expires: u64) -> Revocation {
    Revocation::new(
        Revoked::Subject {
            sub: sub.to_string(),
            issued_before,
        },
        expires,
    )
    .unwrap()
}

fn identity(jti: Option<&str>, sub: Option<&str>, iat: Option<u64>) -> Identity {
    Identity {
        jti: jti.map(Arc::from),
        subject: sub.map(Arc::from),
        issued_at: iat,
        ..Identity::default()
    }
}

#[test]
fn a_revoked_jti_refuses_that_token_only() {
    let set = Revocations::new(10);
    assert!(!set.is_revoked(&identity(Some("a"), Some("alice"), Some(1))));
    set.insert(token("a")).unwrap();
    assert!(set.is_revoked(&identity(Some("a"), Some("alice"), Some(1))));
    assert!(!set.is_revoked(&identity(Some("b"), Some("alice"), Some(1))));
    assert!(!set.is_revoked(&identity(None, Some("alice"), Some(1))));
}

#[test]
fn a_revoked_subject_refuses_older_tokens_and_tokens_without_iat() {
    let set = Revocations::new(10);
    set.insert(subject("alice", 1_000, 5_000)).unwrap();
    assert!(set.is_revoked(&identity(None, Some("alice"), Some(999))));
    assert!(!set.is_revoked(&identity(None, Some("alice"), Some(1_000))));
    assert!(!set.is_revoked(&identity(None, Some("alice"), Some(1_001))));
    assert!(set.is_revoked(&identity(None, Some("alice"), None)));
    assert!(!set.is_revoked(&identity(None, Some("bob"), Some(1))));
    assert!(!set.is_revoked(&identity(None, None, Some(1))));
}

#[test]
fn re_revoking_merges_and_never_shortens() {
    let set = Revocations::new(10);
    let first = set.insert(subject("alice", 1_000, 5_000)).unwrap();
    let second = set.insert(subject("alice", 900, 4_000)).unwrap();
    assert_eq!(first.id, second.id);
    assert_eq!(set.len(), 1);
    assert_eq!(
        second.target,
        Revoked::Subject {
            sub: "alice".into(),
            issued_before: 1_000
        }
    );
    assert_eq!(second.expires, 5_000);
    assert!(set.is_revoked(&identity(None, Some("alice"), Some(950))));
}

#[test]
fn the_bound_refuses_new_entries_but_updates_old_ones() {
    let set = Revocations::new(2);
    set.insert(token("a")).unwrap();
    set.insert(token("b")).unwrap();
    assert_eq!(set.insert(token("c")), Err(RevocationError::Full(2)));
    assert!(set.insert(token("a")).is_ok());
    assert_eq!(set.len(), 2);
    assert!(set.remove(&token("a").id));
    assert!(!set.remove(&token("a").id));
    assert!(set.insert(token("c")).is_ok());
}

#[test]
fn expired_entries_are_pruned() {
    let set = Revocations::new(10);
    set.insert(subject("alice", 10, 100)).unwrap();
    set.insert(token("a")).unwrap();
    assert_eq!(set.prune(100), 0);
    assert_eq!(set.prune(101), 1);
    assert_eq!(set.len(), 1);
    assert!(!set.is_revoked(&identity(None, Some("alice"), Some(1))));
}

#[test]
fn replace_loads_a_whole_set_within_the_bound() {
    let set = Revocations::new(2);
    set.insert(token("old")).unwrap();
    let dropped = set.replace([token("a"), token("b"), token("c")]);
    assert_eq!(dropped, 1);
    assert_eq!(set.len(), 2);
    assert!(!set.is_revoked(&identity(Some("old"), None, None)));
}

#[test]
fn ids_are_stable_and_distinguish_kinds() {
    assert_eq!(token("x").id, token("x").id);
    assert_ne!(token("x").id, subject("x", 1, 2).id);
    assert!(token("x").id.starts_with("t-"));
    assert!(subject("x", 1, 2).id.starts_with("s-"));
    assert_eq!(token("x").id.len(), 26);
}

#[test]
fn claims_must_be_sane() {
    let empty = Revocation::new(Revoked::Token { jti: String::new() }, 1);
    assert_eq!(empty, Err(RevocationError::Claim));
    let long = Revocation::new(
        Revoked::Token {
            jti: "x".repeat(MAX_CLAIM_BYTES + 1),
        },
        1,
    );
    assert_eq!(long, Err(RevocationError::Claim));
}

#[test]
fn the_json_form_is_the_admin_api_one() {
    let json = serde_json::to_value(subject("alice", 10, 100)).unwrap();
    assert_eq!(json["sub"], "alice");
    assert_eq!(json["issued_before"], 10);
    assert_eq!(json["expires"], 100);
    assert!(json["id"].as_str().unwrap().starts_with("s-"));
    let back: Revocation = serde_json::from_value(json).unwrap();
    assert_eq!(back, subject("alice", 10, 100));
    let t: Revocation = serde_json::from_value(serde_json::to_value(token("a")).unwrap()).unwrap();
    assert_eq!(t, token("a"));
}
