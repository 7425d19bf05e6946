//! Broker health as librdkafka reports it: the client context of every
//! consumer and producer sets `causeway_kafka_up` and counts errors.

use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;

use crate::metrics::Metrics;

/// Client context: logs client errors, feeds the health metrics and keeps the
/// partition end offsets reported by librdkafka's statistics.
#[derive(Clone, Default)]
pub struct Health {
    /// Metrics to update, if any.
    pub metrics: Option<std::sync::Arc<Metrics>>,
    /// End offset (last stable offset) of each consumed (topic, partition).
    pub ends: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<(String, i32), i64>>>,
    /// The first failed TLS handshake or SASL authentication librdkafka reported.
    pub auth_failure: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl Health {
    /// The last reported end offset of a partition.
    pub fn end(&self, topic: &str, partition: i32) -> Option<i64> {
        self.ends
            .lock()
            .ok()?
            .get(&(topic.to_string(), partition))
            .copied()
    }

    /// The first failed TLS handshake or SASL authentication, if any: a
    /// setting to fix, not an outage to wait out.
    pub fn auth_failure(&self) -> Option<String> {
        self.auth_failure.lock().ok()?.clone()
    }
}

impl ClientContext for Health {
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.note_stats(statistics)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let transport = matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure)
        );
        eprintln!("causeway: kafka: {reason} ({error})");
        if is_auth_failure(&error, reason) {
            if let Ok(mut first) = self.auth_failure.lock() {
                first.get_or_insert_with(|| reason.to_string());
            }
        }
        if let Some(m) = &self.metrics {
            let kind = if transport { "transport" } else { "other" };
            m.kafka_errors.with_label_values(&[kind]).inc();
            if transport {
                m.kafka_up.set(0);
            }
        }
    }
}

impl ConsumerContext for Health {}

/// TLS alerts by which a broker refuses a client's handshake for its settings
/// (RFC 8446 §6.2): handshake_failure, bad_certificate,
/// unsupported_certificate, certificate_revoked, certificate_expired,
/// certificate_unknown, unknown_ca, access_denied, protocol_version,
/// insufficient_security, certificate_required.
const REFUSING_ALERTS: [u32; 11] = [40, 42, 43, 44, 45, 46, 48, 49, 70, 71, 116];

/// The TLS alert the broker sent, from OpenSSL's text in librdkafka's reason
/// (`...: SSL alert number 116`).
fn received_alert(reason: &str) -> Option<u32> {
    let (_, after) = reason.split_once("SSL alert number ")?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Whether librdkafka's error is a failed TLS handshake or SASL
/// authentication: a setting to fix, not an outage to wait out. Besides
/// librdkafka's own codes, a TLS alert from the broker refusing the client
/// counts: under TLS 1.3 a broker that requires a client certificate (or
/// rejects the one sent) sends its alert after the client's side of the
/// handshake is done, and librdkafka reports it as a failed receive with a
/// transport error code.
pub fn is_auth_failure(error: &KafkaError, reason: &str) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL)
    ) || reason.contains("SSL handshake failed")
        || received_alert(reason).is_some_and(|a| REFUSING_ALERTS.contains(&a))
}

/// What to fix for a failed handshake or authentication `reason` (see
/// [`is_auth_failure`]).
pub fn auth_hint(reason: &str) -> &'static str {
    match received_alert(reason) {
        Some(116) => {
            "the broker requires a client certificate (mutual TLS) and got none it accepts: set ssl.certificate.location and ssl.key.location to a certificate signed by a CA the broker trusts (OpenSSL does not send one whose CA the broker does not name)"
        }
        Some(42..=46 | 48 | 49) => {
            "the broker refused the client certificate: use one signed by a CA the broker trusts and still valid (ssl.certificate.location, ssl.key.location)"
        }
        Some(_) => {
            "the broker refused the TLS handshake: check security.protocol, and whether it requires a client certificate or other TLS versions"
        }
        None if reason.contains("certificate verify failed") => {
            "the broker's certificate did not verify: set ssl.ca.location to the CA that signed it"
        }
        None if reason.contains("SASL") => {
            "check sasl.mechanisms, sasl.username and the password"
        }
        None => "",
    }
}

impl Health {
    fn note_stats(&self, stats: rdkafka::Statistics) {
        let Ok(mut ends) = self.ends.lock() else {
            return;
        };
        for (name, t) in stats.topics {
            for (p, s) in t.partitions {
                let end = if s.ls_offset >= 0 {
                    s.ls_offset
                } else {
                    s.hi_offset
                };
                if p >= 0 && end >= 0 {
                    ends.insert((name.clone(), p), end);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport() -> KafkaError {
        KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure)
    }

    // The reasons below are librdkafka 2.x's, as printed by `causeway run`
    // against the mutual-TLS proxy of tests/tests/kafka_security.rs.
    const NO_CERT: &str = "ssl://127.0.0.1:34077/bootstrap: Receive failed: error:0A00045C:SSL routines::tlsv13 alert certificate required: SSL alert number 116 (after 0ms in state APIVERSION_QUERY)";

    #[test]
    fn a_tls_alert_refusing_the_client_is_an_auth_failure() {
        assert_eq!(received_alert(NO_CERT), Some(116));
        assert!(is_auth_failure(&transport(), NO_CERT));
        assert!(auth_hint(NO_CERT).contains("ssl.certificate.location"));
        let unknown_ca = "ssl://127.0.0.1:36133/bootstrap: Receive failed: error:0A000418:SSL routines::tlsv1 alert unknown ca: SSL alert number 48 (after 0ms in state APIVERSION_QUERY)";
        assert!(is_auth_failure(&transport(), unknown_ca));
        assert!(auth_hint(unknown_ca).contains("refused the client certificate"));
    }

    #[test]
    fn a_plain_transport_failure_is_not() {
        for reason in [
            "127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: Connection refused (after 0ms in state CONNECT)",
            "ssl://b:9093/1: Disconnected (after 5ms in state UP)",
            // close_notify and internal_error: a broker going away, not a setting.
            "ssl://b:9093/1: Receive failed: SSL alert number 0",
            "ssl://b:9093/1: Receive failed: tlsv1 alert internal error: SSL alert number 80",
            "ssl://b:9093/1: SSL alert number x",
        ] {
            assert!(!is_auth_failure(&transport(), reason), "{reason}");
        }
        assert!(is_auth_failure(
            &KafkaError::Global(RDKafkaErrorCode::Authentication),
            "SASL authentication error: Authentication failed"
        ));
    }
}
