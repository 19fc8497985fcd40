//! Authentication of the internal transport. Every request between the nodes of a cluster
//! (Raft, joins, state publishing, writes and replication, plan fragments over Flight)
//! carries proof that its sender knows the cluster secret, and every internal server refuses
//! a request without valid proof with UNAUTHENTICATED. A process that is not part of the
//! cluster can then neither propose state, nor read shards, nor run plans.
//!
//! The proof is `<unix seconds>.<HMAC-SHA256(secret, "creek-cluster:" + seconds)>`, accepted
//! within [`MAX_CLOCK_SKEW_SECS`] of the receiver's clock: the secret itself never travels,
//! and a captured header stops working within minutes. The transport is not encrypted, so on
//! an untrusted network the nodes belong on a private one.
//!
//! The secret is the process's, installed once at start (`creek dev` makes a random one, as
//! its two roles share the process). This module only signs and checks; it must not decide
//! which ports are internal: the servers that call [`server_layer`] are.

use std::sync::OnceLock;

use ring::hmac;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::{InterceptedService, InterceptorLayer};
use tonic::transport::Channel;
use tonic::{Request, Status};

/// The request header that carries the proof.
pub const HEADER: &str = "x-creek-cluster-auth";

/// How far a sender's clock may differ from the receiver's.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

static KEY: OnceLock<hmac::Key> = OnceLock::new();

/// Installs the cluster secret of this process; only the first call takes effect.
pub fn install(secret: &[u8]) -> Result<(), String> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "the cluster secret has {} bytes; it needs at least {MIN_SECRET_BYTES}",
            secret.len()
        ));
    }
    let _ = KEY.set(hmac::Key::new(hmac::HMAC_SHA256, secret));
    Ok(())
}

/// Installs a random secret: for `creek dev`, whose nodes all live in this process.
pub fn install_random() {
    install(crate::ticket::new_key().as_bytes()).expect("a generated key is long enough");
}

fn tag(key: &hmac::Key, seconds: u64) -> String {
    let tag = hmac::sign(key, format!("creek-cluster:{seconds}").as_bytes());
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn now_secs() -> u64 {
    crate::ticket::now_ms() / 1000
}

/// The header value proving this process knows the secret, now.
fn proof() -> Option<String> {
    let key = KEY.get()?;
    let seconds = now_secs();
    Some(format!("{seconds}.{}", tag(key, seconds)))
}

/// Checks a proof against the secret and `now` (seconds).
fn verify(key: &hmac::Key, value: &str, now: u64) -> Result<(), &'static str> {
    let (seconds, tag_hex) = value.split_once('.').ok_or("malformed cluster proof")?;
    let seconds: u64 = seconds.parse().map_err(|_| "malformed cluster proof")?;
    if seconds.abs_diff(now) > MAX_CLOCK_SKEW_SECS {
        return Err("cluster proof from a clock more than 5 minutes away");
    }
    let tag = crate::ticket::key_bytes(tag_hex);
    if tag.len() != 32 {
        return Err("malformed cluster proof");
    }
    hmac::verify(key, format!("creek-cluster:{seconds}").as_bytes(), &tag)
        .map_err(|_| "wrong cluster secret")
}

/// Adds the proof to every request of an internal client.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sign;

impl tonic::service::Interceptor for Sign {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let proof = proof().ok_or_else(|| {
            Status::unauthenticated("this process has no cluster secret to sign with")
        })?;
        let value = MetadataValue::try_from(proof)
            .map_err(|_| Status::internal("cluster proof is not a header value"))?;
        request.metadata_mut().insert(HEADER, value);
        Ok(request)
    }
}

/// A channel to another node whose requests carry the proof.
pub type SignedChannel = InterceptedService<Channel, Sign>;

/// Wraps `channel` so that its requests carry the proof.
pub fn signed(channel: Channel) -> SignedChannel {
    InterceptedService::new(channel, Sign)
}

/// Refuses a request without valid proof (and every request while no secret is installed).
pub fn check(request: Request<()>) -> Result<Request<()>, Status> {
    let key = KEY
        .get()
        .ok_or_else(|| Status::unauthenticated("this node has no cluster secret"))?;
    let value = request
        .metadata()
        .get(HEADER)
        .ok_or_else(|| {
            Status::unauthenticated("missing cluster proof: not a node of this cluster")
        })?
        .to_str()
        .map_err(|_| Status::unauthenticated("malformed cluster proof"))?;
    verify(key, value, now_secs()).map_err(Status::unauthenticated)?;
    Ok(request)
}

/// What an internal server checks every request with.
pub type Check = fn(Request<()>) -> Result<Request<()>, Status>;

/// The layer every internal server puts in front of its services.
pub fn server_layer() -> InterceptorLayer<Check> {
    InterceptorLayer::new(check as Check)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_check_secret_clock_and_shape() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"0123456789abcdef");
        let other = hmac::Key::new(hmac::HMAC_SHA256, b"0123456789abcdeX");
        let now = 1_800_000_000;
        let proof = format!("{now}.{}", tag(&key, now));
        assert_eq!(verify(&key, &proof, now), Ok(()));
        assert_eq!(verify(&key, &proof, now + MAX_CLOCK_SKEW_SECS), Ok(()));
        assert!(verify(&key, &proof, now + MAX_CLOCK_SKEW_SECS + 1).is_err());
        assert_eq!(verify(&other, &proof, now), Err("wrong cluster secret"));
        // The tag is bound to its time: moving the time breaks it.
        let moved = format!("{}.{}", now + 1, tag(&key, now));
        assert_eq!(verify(&key, &moved, now), Err("wrong cluster secret"));
        for garbage in ["", ".", "x.y", "1800000000", "1800000000.abcd", "-1.00"] {
            assert!(verify(&key, garbage, now).is_err(), "{garbage}");
        }
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(install(b"short").is_err());
    }
}
