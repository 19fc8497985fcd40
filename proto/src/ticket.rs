//! Signed tickets for the Flight endpoints data nodes serve to clients.
//!
//! A coordinator that answers `GetFlightInfo` for a scan hands the client one ticket per data
//! node; the client takes it straight to that node. The ticket carries the plan fragment, so
//! a node must be sure the coordinator made it: it is signed with HMAC-SHA256 under the
//! cluster's ticket key (kept in cluster state, never shown to clients), bound to one node,
//! names its query (for logs), and expires; within its lifetime it may be fetched again, as
//! Flight allows. This module signs and checks; it decides nothing about plans.

use prost::Message;
use ring::hmac;

use crate::v1::{ClientTicket, SignedTicket};

/// Why a ticket was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketError {
    /// The bytes are not a signed ticket.
    Malformed(String),
    /// The signature does not match: forged, altered, or signed under another cluster's key.
    BadSignature,
    /// The ticket's time is up.
    Expired {
        /// When it expired, milliseconds since the Unix epoch.
        at_ms: u64,
    },
    /// The ticket names another data node.
    WrongNode(String),
    /// This node has no ticket key yet (it has not received cluster state).
    NoKey,
}

impl std::fmt::Display for TicketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TicketError::Malformed(why) => write!(f, "malformed ticket: {why}"),
            TicketError::BadSignature => f.write_str(
                "ticket signature does not match: forged, altered or from another cluster",
            ),
            TicketError::Expired { at_ms } => write!(
                f,
                "ticket expired at {at_ms} ms since the epoch; ask the coordinator for a new one"
            ),
            TicketError::WrongNode(node) => {
                write!(f, "ticket was issued for data node {node}, not this one")
            }
            TicketError::NoKey => f.write_str("this node has no ticket key yet"),
        }
    }
}

/// Signs `ticket` under `key`.
pub fn sign(key: &[u8], ticket: &ClientTicket) -> Vec<u8> {
    let payload = ticket.encode_to_vec();
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), &payload);
    SignedTicket {
        payload,
        signature: tag.as_ref().to_vec(),
    }
    .encode_to_vec()
}

/// Checks `bytes` under `key` for node `node_id` at `now_ms` and returns the ticket. The
/// signature is checked (in constant time) before anything in the payload is believed.
pub fn verify(
    key: &[u8],
    bytes: &[u8],
    node_id: &str,
    now_ms: u64,
) -> Result<ClientTicket, TicketError> {
    if key.is_empty() {
        return Err(TicketError::NoKey);
    }
    let signed = SignedTicket::decode(bytes).map_err(|e| TicketError::Malformed(e.to_string()))?;
    hmac::verify(
        &hmac::Key::new(hmac::HMAC_SHA256, key),
        &signed.payload,
        &signed.signature,
    )
    .map_err(|_| TicketError::BadSignature)?;
    let ticket = ClientTicket::decode(signed.payload.as_slice())
        .map_err(|e| TicketError::Malformed(e.to_string()))?;
    if ticket.node_id != node_id {
        return Err(TicketError::WrongNode(ticket.node_id));
    }
    if now_ms > ticket.expires_at_ms {
        return Err(TicketError::Expired {
            at_ms: ticket.expires_at_ms,
        });
    }
    Ok(ticket)
}

/// A new random ticket key, hex-encoded as cluster state keeps it.
pub fn new_key() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random source failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key bytes of a hex ticket key (empty if it is not valid hex).
pub fn key_bytes(hex: &str) -> Vec<u8> {
    let digits = hex.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return Vec::new();
    }
    let value = |digit: u8| char::from(digit).to_digit(16);
    digits
        .chunks(2)
        .map(|pair| Some((value(pair[0])? * 16 + value(pair[1])?) as u8))
        .collect::<Option<Vec<u8>>>()
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(expires_at_ms: u64) -> ClientTicket {
        ClientTicket {
            fragment: vec![1, 2, 3],
            expires_at_ms,
            query_id: "q".into(),
            schema: vec![],
            node_id: "d1".into(),
        }
    }

    #[test]
    fn signed_tickets_verify_and_tampering_is_refused() {
        let key = key_bytes(&new_key());
        assert_eq!(key.len(), 32);
        let bytes = sign(&key, &ticket(2_000));
        assert_eq!(verify(&key, &bytes, "d1", 1_000).unwrap(), ticket(2_000));
        assert_eq!(
            verify(&key, &bytes, "d1", 3_000),
            Err(TicketError::Expired { at_ms: 2_000 })
        );
        assert!(matches!(
            verify(&key, &bytes, "d2", 1_000),
            Err(TicketError::WrongNode(_))
        ));
        let other = key_bytes(&new_key());
        assert_eq!(
            verify(&other, &bytes, "d1", 1_000),
            Err(TicketError::BadSignature)
        );
        // Every single flipped bit is caught, in the payload or in the signature.
        for index in 0..bytes.len() {
            for bit in 0..8 {
                let mut altered = bytes.clone();
                altered[index] ^= 1 << bit;
                assert!(verify(&key, &altered, "d1", 1_000).is_err());
            }
        }
        assert_eq!(verify(&[], &bytes, "d1", 1_000), Err(TicketError::NoKey));
        assert!(
            key_bytes("zz").is_empty() && key_bytes("é1").is_empty() && key_bytes("abc").is_empty()
        );
        assert_eq!(key_bytes("0aFf"), vec![10, 255]);
        assert!(matches!(
            verify(&key, b"\xff\xff", "d1", 1_000),
            Err(TicketError::Malformed(_))
        ));
    }
}
