//! Effect classification: the reference's starter heuristic.

use crate::protocol::contract::Command;
use crate::protocol::policy::Policy;

/// Extension effect type for payment-provider calls.
pub const FINANCIAL_ACTION: &str = "financial_action";

/// Classify a command's effect. If the first argv's executable is exactly
/// `curl`, the effect is `financial_action` when an `allowed_egress_hosts`
/// entry occurs in the space-joined argv and itself contains `stripe`,
/// otherwise `fetch_external`. Any other command keeps its proposed type.
pub fn classify(command: &Command, policy: &Policy) -> String {
    let vectors = command.argv_vectors();
    let Some(first) = vectors.first() else {
        return command.proposed_effect_type.as_str().to_owned();
    };
    if first.first().map(String::as_str) == Some("curl") {
        let joined = first.join(" ");
        let financial = policy
            .allowed_egress_hosts
            .iter()
            .any(|host| joined.contains(host.as_str()) && host.contains("stripe"));
        return if financial {
            FINANCIAL_ACTION
        } else {
            "fetch_external"
        }
        .to_owned();
    }
    command.proposed_effect_type.as_str().to_owned()
}
